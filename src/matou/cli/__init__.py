"""Entry points: argument parsing and thin command adapters."""
