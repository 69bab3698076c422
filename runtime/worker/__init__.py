"""The resident GPU worker: pulls jobs from the lanes, renders with the engine, reports results."""
