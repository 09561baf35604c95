"""matou-runtime: the OCI runtime (create/start/exec/kill/delete/…) behind a runc-compatible CLI.

May import: cgroups, linux, oci, errors. Knows nothing of images or HTTP."""
