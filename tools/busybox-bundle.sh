#!/usr/bin/env bash
# busybox-bundle.sh DIR [ARG...] — an OCI bundle in DIR whose rootfs is Debian's
# busybox-static with its applet links, and whose config.json (matou-runtime spec,
# no terminal, writable root) runs ARG... (default: sh).
set -eu
dir=$1; shift
[ $# -gt 0 ] || set -- sh
bb=${BUSYBOX:-/bin/busybox}
[ -x "$bb" ] || { echo "busybox-bundle: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
rt=${MATOU_RUNTIME:-matou-runtime}
mkdir -p "$dir/rootfs"
r=$dir/rootfs
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,etc,root,tmp,var,run}
chmod 1777 "$r/tmp"
cp "$bb" "$r/bin/busybox"
chroot "$r" /bin/busybox --install -s
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' > "$r/etc/passwd"
printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' > "$r/etc/group"
rm -f "$dir/config.json"
"$rt" spec --bundle "$dir"
python3 - "$dir/config.json" "$@" <<'PY'
import json, sys
path, args = sys.argv[1], sys.argv[2:]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = args
spec["root"]["readonly"] = False
json.dump(spec, open(path, "w"), indent=2)
PY
