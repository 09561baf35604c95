"""Distribution client and matou-registry server (filled by the registry issue)."""
