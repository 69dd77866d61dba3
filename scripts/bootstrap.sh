#!/usr/bin/env bash
# Create the project's virtualenv (.venv) and install requirements-dev.txt into it, and install the
# dashboard's browser libraries (package-lock.json) into node_modules/ with `npm ci`.
#
# Idempotent and quick: the sha256 of every requirements file is kept in .venv/.requirements.sha256
# and nothing is installed when it still matches (a re-run costs ~50 ms). A venv whose Python is gone
# (e.g. copied from another machine) is rebuilt.
#
# node_modules is reinstalled only when package-lock.json changed (its sha256 is kept in
# node_modules/.package-lock.sha256).
#
# Environment: PYTHON (python3) picks the interpreter; KUBEMONITOR_VENV (.venv) the venv's folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="${KUBEMONITOR_VENV:-$ROOT/.venv}"
STAMP="$VENV/.requirements.sha256"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# The dashboard's charts (uPlot) come from npm and are served as static files, never from a CDN.
if [[ -f package-lock.json ]]; then
    node_want="$(sha256sum package-lock.json | cut -d' ' -f1)"
    node_stamp=node_modules/.package-lock.sha256
    if [[ ! -f "$node_stamp" || "$(cat "$node_stamp")" != "$node_want" ]]; then
        if ! command -v npm >/dev/null; then
            log "npm is missing: install Node.js and npm (Debian: apt-get install -y npm), then rerun"
            exit 1
        fi
        log "installing the dashboard's browser libraries (npm ci)"
        npm ci --ignore-scripts --no-audit --no-fund --no-update-notifier --loglevel=error >&2
        mkdir -p node_modules  # npm ci makes none when there is nothing to install
        printf '%s\n' "$node_want" >"$node_stamp"
    else
        log "node_modules up to date"
    fi
fi

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
