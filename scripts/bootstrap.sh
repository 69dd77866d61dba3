#!/usr/bin/env bash
# Create the project's virtualenv (.venv) and install requirements-dev.txt into it.
#
# Idempotent and quick: the sha256 of every requirements file is kept in .venv/.requirements.sha256
# and nothing is installed when it still matches (a re-run costs ~50 ms). A venv whose Python is gone
# (e.g. copied from another machine) is rebuilt.
#
# Environment: PYTHON (python3) picks the interpreter; KUBEMONITOR_VENV (.venv) the venv's folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="${KUBEMONITOR_VENV:-$ROOT/.venv}"
STAMP="$VENV/.requirements.sha256"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# Every file pip reads: the -r chain of requirements-dev.txt plus the collector's own list.
req_files=(requirements.txt requirements-dev.txt)
[[ -f collector/requirements.txt ]] && req_files+=(collector/requirements.txt)
want="$( (printf '%s\n' "$("$PYTHON" -c 'import sys; print(sys.version)')"; cat "${req_files[@]}") | sha256sum | cut -d' ' -f1)"

if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
        log "venv up to date ($VENV)"
        exit 0
    fi
else
    log "creating venv $VENV with $("$PYTHON" --version 2>&1)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

log "installing ${req_files[*]}"
pip_args=(--disable-pip-version-check --quiet)
install=(-r requirements-dev.txt)
[[ -f collector/requirements.txt ]] && install+=(-r collector/requirements.txt)
"$VENV/bin/python" -m pip install "${pip_args[@]}" "${install[@]}"
printf '%s\n' "$want" >"$STAMP"
log "venv ready ($VENV)"
