"""Engine API client edge: the transport the `matou` CLI uses (transport.py)."""
