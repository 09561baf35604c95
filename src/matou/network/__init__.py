"""Bridges, IPAM, port maps, DNS (filled by the daemon and networks issues)."""
