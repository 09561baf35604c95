"""matou (码头, "the wharf"): a Docker-compatible container engine in Python.

The package is layered (see DESIGN.md); a module imports only from layers below it:

    cli · daemon                     entry points
    api · client                     HTTP edges
    engine                           Docker semantics
    images · registry · network · shim
    runtime · content · snapshots · archive · cgroups
    linux                            the only place that calls ctypes/libc
    oci · errors                     pure records and parsers
"""

__version__ = "0.1.0"
