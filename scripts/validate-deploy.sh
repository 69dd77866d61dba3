#!/usr/bin/env bash
# Validate docker-compose.yml and k8s/ offline (see scripts/validate_deploy.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${KUBEMONITOR_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "[validate-deploy] $PY missing; run scripts/bootstrap.sh" >&2; exit 1; }
exec "$PY" "$ROOT/scripts/validate_deploy.py"
