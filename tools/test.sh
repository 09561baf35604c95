#!/usr/bin/env bash
# tools/test.sh — lint, type-check and run every test (unit; integration when root).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${MATOU_VENV:-/opt/matou/venv}/bin
"$py/ruff" check src tests
"$py/mypy"
exec "$py/python" -m pytest -q -p no:cacheprovider "$@" tests
