"""Engine API client edge (filled by the CLI issue)."""
