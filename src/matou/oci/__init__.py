"""Pure records and parsers of the OCI specs (runtime spec, state); no I/O beyond json."""
