"""matoud composition root (filled by the daemon issue)."""
