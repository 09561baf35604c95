"""`features`: what this runtime supports, in the runtime spec's features.md shape."""

from __future__ import annotations

import os
from typing import Any

from matou.cgroups.layout import hierarchies
from matou.linux import caps, mount, seccomp
from matou.oci.runtime_spec import NAMESPACE_TYPES


def features() -> dict[str, Any]:
    layout = hierarchies()
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": sorted([*mount.FLAG_OPTIONS, *mount.PROPAGATION]),
        "linux": {
            "namespaces": list(NAMESPACE_TYPES),
            "capabilities": list(caps.CAPABILITIES[: caps.last_cap() + 1]),
            "cgroup": {
                "v1": any(h.version == 1 for h in layout),
                "v2": any(h.version == 2 for h in layout),
                "systemd": False,
                "systemdUser": False,
                "rdma": False,
            },
            "seccomp": {
                "enabled": True,
                "actions": sorted(seccomp.ACTIONS),
                "operators": sorted(seccomp.OPERATORS),
                "archs": sorted(seccomp.ARCHES),
                "knownFlags": list(seccomp.FLAGS),
                "supportedFlags": list(seccomp.FLAGS),
            },
            "apparmor": {"enabled": os.path.exists("/sys/kernel/security/apparmor")},
            "selinux": {"enabled": os.path.exists("/sys/fs/selinux/enforce")},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.implementation": "matou"},
    }
