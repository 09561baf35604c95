"""Docker semantics: containers, exec, images, networks, volumes (filled by the daemon issue)."""
