"""`python -m runtime.worker`: the container's command."""

from runtime.worker.service import main

main()
