#!/bin/bash
# matou's main job: matoud serving (started if it is not), the busybox image in it (made
# from Debian's busybox-static if missing, offline), then
#     matou run --rm busybox echo Hello World!
set -euo pipefail
export MATOU_HOST=${MATOU_HOST:-unix:///run/matou/matou.sock}
if ! matou version >/dev/null 2>&1; then
  nohup matoud >/var/log/matoud.log 2>&1 &
  for _ in $(seq 200); do matou version >/dev/null 2>&1 && break; sleep 0.05; done
  matou version >/dev/null || { echo "matoud did not start: see /var/log/matoud.log" >&2; exit 1; }
fi
if [ -z "$(matou images -q busybox:latest)" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  matou-images --root "$tmp/store" --snapshotter native busybox >/dev/null
  matou-images --root "$tmp/store" --snapshotter native save -o "$tmp/busybox.tar" busybox:latest
  matou load -q -i "$tmp/busybox.tar" >/dev/null
fi
exec matou run --rm busybox echo 'Hello World!'
