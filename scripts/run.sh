#!/usr/bin/env bash
# Run kubemonitor on this machine, no Docker: a private PostgreSQL (unless DATABASE_URL is set),
# migrations, an admin login and tokens, the API on http://127.0.0.1:${PORT:-8000}/, the rollup
# loop and a collector for this host. Ctrl-C stops all of it. Options: scripts/run.sh --help.
#
# KUBEMONITOR_VENV picks another virtualenv (default .venv, created and kept up to date here).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
VENV="${KUBEMONITOR_VENV:-$ROOT/.venv}"
exec "$VENV/bin/python" scripts/run_local.py "$@"
