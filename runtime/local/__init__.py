"""Local mode: the whole service on one machine against a local AWS emulator (moto server).

Resources come from the same definitions as the stack (`runtime.common.names`, `infra.config`),
the API runs behind a small API Gateway emulation, one worker runs as a subprocess, and the demo
drives everything through the `musetalk` CLI code.
"""
