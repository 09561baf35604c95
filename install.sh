#!/usr/bin/env bash
# install.sh — install matou and everything it needs on Debian 12, as root. Idempotent:
# apt runs only for missing packages; the venv is reused; the checkout is installed editable.
#   MATOU_VENV   where the virtualenv lives (default /opt/matou/venv)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${MATOU_VENV:-/opt/matou/venv}
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }

# runtime needs: python3-venv, libseccomp2, busybox-static (images for tests and the demo),
# procps (`ps`), util-linux (unshare, mount), iptables (bridge networks: NAT, forwarding),
# gcc + libc6-dev (matou-supervise, the small native supervisor of a running container);
# peers for tests/benchmarks: containerd, runc, crun, docker-compose (v1, a real client),
# skopeo and docker-registry (CNCF distribution: registry interop), tmux (the client's
# terminal test); hyperfine for bench/.
packages=(python3 python3-venv libseccomp2 busybox-static procps util-linux iproute2 iptables
          gcc libc6-dev containerd runc crun docker-compose skopeo tmux docker-registry
          hyperfine)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -e "$here[dev]"
# byte-compile now: with PYTHONDONTWRITEBYTECODE set, every run would recompile the
# sources, which triples matou-runtime's start-up
"$venv/bin/python" -m compileall -q "$here/src" >/dev/null
# the resident supervisor of a running container (~1 MiB instead of an interpreter's 13);
# shims fall back to serving in Python when it is missing
gcc -O2 -Wall -Werror -o "$venv/bin/matou-supervise.new" "$here/src/matou/shim/native/supervise.c"
mv "$venv/bin/matou-supervise.new" "$venv/bin/matou-supervise"
# the last steps of an exec into a container (joins, capabilities, seccomp, execve) in C,
# static (no dynamic loading at each exec); exec falls back to Python when it is missing
gcc -O2 -Wall -Werror -static -o "$venv/bin/matou-exec.new" "$here/src/matou/runtime/native/exec.c"
mv "$venv/bin/matou-exec.new" "$venv/bin/matou-exec"
for cmd in matou-runtime matou-images matoud matou matou-registry; do
  ln -sf "$venv/bin/$cmd" "/usr/local/bin/$cmd"
done
echo "matou installed in $venv ($(matou-runtime --version | head -1))"
