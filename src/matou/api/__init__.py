"""Engine API HTTP server edge (filled by the daemon issue)."""
