#!/usr/bin/env bash
# The project's test command: everything a fresh Debian 12 machine with PostgreSQL 15 on
# 127.0.0.1:5432 (trust auth) needs, then every test pass, then one summary.
#
#   scripts/test.sh                 # all passes
#   scripts/test.sh -k ingest -x    # extra arguments go to every pytest run
#   TEST_PASSES=deploy,ts scripts/test.sh
#
# Passes (TEST_PASSES, comma-separated; default deploy,lint,ts,pg,tsl):
#   lint    ruff check . (ruff.toml) and mypy with django-stubs (mypy.ini): zero findings.
#   deploy  scripts/validate-deploy.sh: docker-compose.yml through the real Compose parser and every
#           k8s/ manifest through kubernetes-validate --strict.
#   ts      the whole suite on TimescaleDB (TIMESCALEDB=auto, database kubemonitor_ts): the Apache
#           edition installed by scripts/install-timescaledb.sh, or the TSL where present. Also
#           the fault test (tests/test_database_restart.py: a private PostgreSQL stopped and
#           restarted under ingest load) and, like every pass, schemathesis against /api/schema/
#           (metrics/tests/test_schemathesis.py); either fails the run if it finds errors.
#   pg      the server suite (metrics/tests, tests/) on plain PostgreSQL (TIMESCALEDB=off,
#           database kubemonitor_pg).
#   tsl     the server suite against $TSL_DATABASE_URL (a TimescaleDB with its TSL module); skipped
#           when that variable is unset.
# The dashboard's browser tests (Debian's chromium, installed here when root) write screenshots to
# test-output/dashboard/ (KUBEMONITOR_TEST_OUTPUT moves the root).
# Each pytest run uses --create-db. A pass that collects no test (pytest exit 5) fails, except
# when extra arguments filtered it down to nothing and another pass did run tests.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PGHOST_ADDR="${KUBEMONITOR_TEST_PGHOST:-127.0.0.1}"
PGPORT_NUM="${KUBEMONITOR_TEST_PGPORT:-5432}"
PG_BASE="postgres://postgres@${PGHOST_ADDR}:${PGPORT_NUM}"
TEST_PASSES="${TEST_PASSES:-deploy,lint,ts,pg,tsl}"
LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/kubemonitor-test.XXXXXX")"
trap 'rm -rf "$LOG_DIR"' EXIT

log() { printf '\n[test] %s\n' "$*"; }
die() { printf '[test] ERROR: %s\n' "$*" >&2; exit 1; }
wants() { [[ ",$TEST_PASSES," == *",$1,"* ]]; }

# ------------------------------------------------------------------ setup
# bootstrap.sh installs the dashboard's chart library with npm ci; a fresh Debian has no npm.
if ! command -v npm >/dev/null && [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing npm (Debian) for the dashboard's browser libraries"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }; } \
        || die "apt-get install npm failed; scripts/bootstrap.sh needs npm"
fi
log "bootstrapping .venv"
bash scripts/bootstrap.sh || die "scripts/bootstrap.sh failed"
PY="$ROOT/.venv/bin/python"

if wants ts || wants pg; then
    if command -v pg_isready >/dev/null && ! pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM"; then
        # The machine starts PostgreSQL before a session; a run after a reboot may find it stopped.
        if [[ "$(id -u)" -eq 0 ]] && command -v pg_ctlcluster >/dev/null; then
            log "PostgreSQL is not answering on ${PGHOST_ADDR}:${PGPORT_NUM}; starting cluster 15/main"
            pg_ctlcluster --skip-systemctl-redirect 15 main start || true
            for _ in $(seq 1 30); do pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM" && break; sleep 1; done
        fi
        pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM" \
            || die "PostgreSQL is not reachable at ${PGHOST_ADDR}:${PGPORT_NUM}"
    fi
fi

# The dashboard tests drive Debian's Chromium with Playwright (Playwright cannot download its own
# browsers here). Without root the browser tests skip and say so.
if (wants ts || wants pg) && [[ ! -x /usr/bin/chromium ]]; then
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing Debian's chromium for the dashboard's browser tests"
        { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; } \
            || die "apt-get install chromium failed; the dashboard's browser tests need it"
    else
        log "no /usr/bin/chromium and not root: the dashboard's browser tests will be skipped"
    fi
fi

if wants ts; then
    log "installing TimescaleDB (Apache edition) if needed"
    bash scripts/install-timescaledb.sh || die "scripts/install-timescaledb.sh failed; the ts pass needs TimescaleDB"
fi

# ------------------------------------------------------------------ passes
declare -a NAMES=() STATUS=() DETAIL=() SECONDS_TAKEN=()
FAILED=0
RAN_TESTS=0
declare -a EMPTY_PASSES=()

record() {  # name status detail seconds
    NAMES+=("$1"); STATUS+=("$2"); DETAIL+=("$3"); SECONDS_TAKEN+=("$4")
}

# pytest's closing line, e.g. "12 passed, 1 skipped in 3.40s", without the ='s around it.
closing_line() {
    grep -E '^(=+ )?([0-9]+ (passed|failed|errors?|skipped|deselected|xfailed|xpassed)|no tests ran)' "$1" \
        | tail -n 1 \
        | sed -E 's/^=+ //; s/ =+$//'
}

run_pytest() {  # name, then env assignments up to "--", then pytest arguments
    local name="$1"; shift
    local -a envs=()
    while [[ "$1" != "--" ]]; do envs+=("$1"); shift; done
    shift
    local logf="$LOG_DIR/$name.log" start=$SECONDS rc
    log "pass $name: ${envs[*]} pytest $*"
    env "${envs[@]}" "$PY" -m pytest --create-db "$@" 2>&1 | tee "$logf"
    rc=${PIPESTATUS[0]}
    local took=$((SECONDS - start)) line
    line="$(closing_line "$logf")"
    case "$rc" in
        0) record "$name" ok "${line:-passed}" "$took"; RAN_TESTS=1 ;;
        5) record "$name" "NO TESTS" "${line:-no tests collected}" "$took"; EMPTY_PASSES+=("$name") ;;
        *) record "$name" FAILED "exit $rc: ${line:-see output above}" "$took"; FAILED=1
           [[ -n "$line" && "$line" == *passed* ]] && RAN_TESTS=1 ;;
    esac
}

if wants deploy; then
    start=$SECONDS
    log "pass deploy: scripts/validate-deploy.sh"
    if bash scripts/validate-deploy.sh; then
        record deploy ok "compose file and k8s manifests valid" $((SECONDS - start))
    else
        record deploy FAILED "scripts/validate-deploy.sh failed (see above)" $((SECONDS - start)); FAILED=1
    fi
fi

if wants lint; then
    start=$SECONDS
    log "pass lint: ruff check . && mypy"
    # mypy's Django plugin imports the settings, which need these set; nothing connects.
    if "$ROOT/.venv/bin/ruff" check . \
        && SECRET_KEY=lint DEBUG=true DATABASE_URL="${PG_BASE}/lint" "$ROOT/.venv/bin/mypy" --config-file mypy.ini metrics monitor_site collector; then
        record lint ok "ruff and mypy: no findings" $((SECONDS - start))
    else
        record lint FAILED "ruff or mypy found problems (see above)" $((SECONDS - start)); FAILED=1
    fi
fi

# The one-command-run, artifact and database-restart tests do not depend on the database tier;
# run them once (in the ts pass). The restart test starts a private PostgreSQL of its own.
once_only=(--ignore=tests/test_local_run.py --ignore=tests/test_deploy_artifacts.py
           --ignore=tests/test_database_restart.py)

if wants ts; then
    run_pytest ts "DATABASE_URL=${PG_BASE}/kubemonitor_ts" TIMESCALEDB=auto -- "$@"
fi
if wants pg; then
    run_pytest pg "DATABASE_URL=${PG_BASE}/kubemonitor_pg" TIMESCALEDB=off -- \
        metrics/tests tests "${once_only[@]}" "$@"
fi
if wants tsl; then
    if [[ -n "${TSL_DATABASE_URL:-}" ]]; then
        run_pytest tsl "DATABASE_URL=${TSL_DATABASE_URL}" TIMESCALEDB=auto -- \
            metrics/tests tests "${once_only[@]}" "$@"
    else
        record tsl skipped "TSL_DATABASE_URL is not set" 0
    fi
fi

# A pass that collected nothing is a failure unless extra arguments filtered it away on purpose.
if ((${#EMPTY_PASSES[@]})); then
    if (($# == 0)) || ((RAN_TESTS == 0)); then
        FAILED=1
    fi
fi

# ------------------------------------------------------------------ summary
printf '\n==================== kubemonitor test summary ====================\n'
for i in "${!NAMES[@]}"; do
    printf '  %-7s %-9s %5ss  %s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${SECONDS_TAKEN[$i]}" "${DETAIL[$i]}"
done
if ((FAILED)); then
    printf 'RESULT: FAILED\n'
    exit 1
fi
printf 'RESULT: all passes ok\n'
