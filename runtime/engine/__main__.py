"""`python -m runtime.engine render ...` and `python -m runtime.engine make-weights ...`."""

from runtime.engine.cli import main

raise SystemExit(main())
