"""cgroup v1, v2 and hybrid managers: create, place, limit, freeze, list and remove a cgroup.

May import: linux, oci, errors.
"""

from matou.cgroups.manager import Manager, resolve_path

__all__ = ["Manager", "resolve_path"]
