"""The `musetalk` command: submit, follow, download and erase lip-sync jobs.

The same code talks to a deployed stack and to local mode (`python -m runtime.local`); only the
endpoint and the API key differ.
"""
