"""The per-container supervisor (filled by the daemon issue)."""
