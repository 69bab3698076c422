"""The MuseTalk lip-sync engine: torch, diffusers, transformers, PyAV. Imports no AWS and no HTTP.

Import `runtime.engine.engine_contract` for the types the worker depends on; the heavy modules are
imported only when an engine is loaded.
"""
