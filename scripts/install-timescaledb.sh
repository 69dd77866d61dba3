#!/usr/bin/env bash
# Install the TimescaleDB *Apache edition* into the local PostgreSQL 15 cluster
# (Debian cluster 15/main, 127.0.0.1:5432, trust auth, user postgres).
#
# Debian bookworm ships no TimescaleDB package, so this builds Debian trixie's
# source package (Apache-only, `Files-Excluded: tsl`) against
# postgresql-server-dev-15. It is idempotent: when the extension is already
# available and preloaded it prints one line and exits 0 straight away, so it
# is cheap to run before every test run.
#
# Environment overrides (all optional):
#   PGHOST (127.0.0.1) PGPORT (5432) PGUSER (postgres)
#   PG_MAJOR (15) PG_CLUSTER (main)
#   TSDB_SUITE (trixie)   Debian suite whose source package is built
#   TSDB_FORCE=1          skip the fast path and rebuild/reinstall
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PG_CLUSTER="${PG_CLUSTER:-main}"
export PGHOST="${PGHOST:-127.0.0.1}"
export PGPORT="${PGPORT:-5432}"
export PGUSER="${PGUSER:-postgres}"
TSDB_SUITE="${TSDB_SUITE:-trixie}"
PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
CONF_DIR="/etc/postgresql/${PG_MAJOR}/${PG_CLUSTER}/conf.d"
CONF_FILE="${CONF_DIR}/timescaledb.conf"

log() { printf '[install-timescaledb] %s\n' "$*"; }
die() { printf '[install-timescaledb] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- fast path
already_installed() {
    command -v psql >/dev/null 2>&1 || return 1
    local available preload
    available="$(psql -X -At -d postgres -c \
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'" 2>/dev/null)" || return 1
    preload="$(psql -X -At -d postgres -c 'SHOW shared_preload_libraries' 2>/dev/null)" || return 1
    [[ "$available" == "1" && "$preload" == *timescaledb* ]]
}

if [[ "${TSDB_FORCE:-0}" != "1" ]] && already_installed; then
    log "TimescaleDB already installed and preloaded on ${PGHOST}:${PGPORT}; nothing to do."
    exit 0
fi

# ---------------------------------------------------------------- preconditions
[[ "$(id -u)" -eq 0 ]] || die "must run as root (installs packages and writes to /etc/postgresql); re-run with sudo."
command -v apt-get >/dev/null 2>&1 || die "apt-get not found; this script supports Debian/apt systems only."
command -v pg_ctlcluster >/dev/null 2>&1 || die "pg_ctlcluster not found; is postgresql-common installed?"
[[ -d "/etc/postgresql/${PG_MAJOR}/${PG_CLUSTER}" ]] \
    || die "PostgreSQL cluster ${PG_MAJOR}/${PG_CLUSTER} not found (pg_lsclusters lists the existing ones)."

export DEBIAN_FRONTEND=noninteractive
START_TS=$SECONDS

# ---------------------------------------------------------------- temp dir + cleanup
WORK="$(mktemp -d /tmp/install-timescaledb.XXXXXX)"
SRC_LIST="$WORK/apt/timescaledb-src.list"
cleanup() {
    local rc=$?
    rm -f "$SRC_LIST"   # the throwaway deb-src file never outlives the script
    rm -rf "$WORK"
    if ((rc != 0)); then
        printf '[install-timescaledb] ERROR: failed (exit %s); temporary files removed.\n' "$rc" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_logged LOGNAME CMD...: run quietly, show the log tail when it fails
run_logged() {
    local logf="$WORK/$1.log"; shift
    "$@" >"$logf" 2>&1 || { local rc=$?; tail -n 40 "$logf" >&2; return "$rc"; }
}

# ---------------------------------------------------------------- build deps
BUILD_DEPS=(postgresql-server-dev-"${PG_MAJOR}" cmake build-essential dpkg-dev libssl-dev)
log "installing build dependencies: ${BUILD_DEPS[*]}"
if ! run_logged apt-install apt-get install -y -q --no-install-recommends "${BUILD_DEPS[@]}"; then
    log "apt-get install failed; refreshing package lists (apt-get update) and retrying"
    run_logged apt-update apt-get update -q || die "apt-get update failed (log above)."
    run_logged apt-install apt-get install -y -q --no-install-recommends "${BUILD_DEPS[@]}" \
        || die "could not install build dependencies (log above): ${BUILD_DEPS[*]}"
fi
[[ -x "$PG_CONFIG" ]] || die "$PG_CONFIG missing after installing postgresql-server-dev-${PG_MAJOR}."

# ---------------------------------------------------------------- mirror discovery
# Use the Debian archive mirror already configured on this machine (one-line
# *.list or deb822 *.sources); never hard-code a host.
find_debian_mirror() {
    local files=() f
    [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] && files+=("$f")
    done
    ((${#files[@]})) || return 1
    awk '
        /^[[:space:]]*#/ { next }
        /^[[:space:]]*deb(-src)?[[:space:]]/ {
            for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; break }
            next
        }
        /^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i }
    ' "${files[@]}" \
        | sed -E 's#/+$##' \
        | grep -E '^https?://[^/]+(/[^ ]*)?/debian$' \
        | head -n1
}
MIRROR="$(find_debian_mirror || true)"
[[ -n "$MIRROR" ]] || die "no Debian archive mirror (a URI ending in /debian) found in /etc/apt/sources.list(.d)."
log "using configured Debian mirror: $MIRROR (suite $TSDB_SUITE, source only)"

# ---------------------------------------------------------------- throwaway apt config
mkdir -p "$WORK/apt/parts" "$WORK/apt/lists/partial" "$WORK/src" "$WORK/build"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f "$KEYRING" ]] || die "$KEYRING missing (install debian-archive-keyring)."
echo "deb-src [signed-by=$KEYRING] $MIRROR $TSDB_SUITE main" >"$SRC_LIST"

# Every apt call below sees only the throwaway sources file and its own lists
# directory, so the system's apt state (/var/lib/apt/lists, caches) is untouched.
APT_OPTS=(
    -o "Dir::Etc::SourceList=$SRC_LIST"
    -o "Dir::Etc::SourceParts=$WORK/apt/parts"
    -o "Dir::State::Lists=$WORK/apt/lists"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "APT::Sandbox::User=root"
)
log "fetching $TSDB_SUITE source index (apt-get update limited to the throwaway sources file)"
run_logged apt-update-src apt-get "${APT_OPTS[@]}" update -q \
    || die "apt-get update for $MIRROR $TSDB_SUITE (deb-src) failed (log above)."

log "downloading and unpacking the timescaledb source package"
(cd "$WORK/src" && run_logged apt-source apt-get "${APT_OPTS[@]}" source -q timescaledb) \
    || die "apt-get source timescaledb failed (log above)."
rm -f "$SRC_LIST"   # not needed any more; the trap removes it on failure as well

SRC_DIR="$(find "$WORK/src" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' | head -n1)"
[[ -n "$SRC_DIR" && -f "$SRC_DIR/CMakeLists.txt" ]] || die "unpacked source tree not found under $WORK/src."
log "source tree: $(basename "$SRC_DIR")"

# ---------------------------------------------------------------- build + install
log "configuring (APACHE_ONLY=ON) against $PG_CONFIG ($("$PG_CONFIG" --version))"
run_logged cmake cmake -S "$SRC_DIR" -B "$WORK/build" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPG_CONFIG="$PG_CONFIG" \
    -DAPACHE_ONLY=ON \
    -DREGRESS_CHECKS=OFF \
    -DTAP_CHECKS=OFF \
    -DWARNINGS_AS_ERRORS=OFF \
    -DUSE_TELEMETRY=OFF \
    || die "cmake configure failed (log above)."

log "building (make -j2)"
run_logged make make -C "$WORK/build" -j2 || die "make failed (log above)."
log "installing into $("$PG_CONFIG" --pkglibdir) and $("$PG_CONFIG" --sharedir)/extension"
run_logged make-install make -C "$WORK/build" install || die "make install failed (log above)."

# ---------------------------------------------------------------- configure + restart
mkdir -p "$CONF_DIR"
printf "# Written by scripts/install-timescaledb.sh\nshared_preload_libraries = 'timescaledb'\n" >"$CONF_FILE"
chown postgres:postgres "$CONF_FILE" 2>/dev/null || true
log "wrote $CONF_FILE"

log "restarting PostgreSQL cluster $PG_MAJOR/$PG_CLUSTER"
pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" "$PG_CLUSTER" restart \
    || die "restart of cluster $PG_MAJOR/$PG_CLUSTER failed; see /var/log/postgresql/postgresql-$PG_MAJOR-$PG_CLUSTER.log"

for _ in $(seq 1 60); do
    pg_isready -q -h "$PGHOST" -p "$PGPORT" && break
    sleep 0.5
done
pg_isready -q -h "$PGHOST" -p "$PGPORT" \
    || die "PostgreSQL on $PGHOST:$PGPORT did not accept connections within 30 s after restart."

# ---------------------------------------------------------------- verify
SCRATCH_DB="tsdb_install_check_$$"
log "verifying with CREATE EXTENSION in scratch database $SCRATCH_DB"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $SCRATCH_DB" \
    || die "could not create scratch database $SCRATCH_DB."
verify_rc=0
VERSION_INFO="$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$SCRATCH_DB" \
    -c "CREATE EXTENSION timescaledb" \
    -c "SELECT extversion || ' (license ' || current_setting('timescaledb.license') || ')' FROM pg_extension WHERE extname = 'timescaledb'" \
    2>&1)" || verify_rc=$?
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $SCRATCH_DB" >/dev/null 2>&1 || true
((verify_rc == 0)) || die "CREATE EXTENSION timescaledb failed: $VERSION_INFO"
already_installed || die "post-install check failed (extension not available or not preloaded)."

log "done in $((SECONDS - START_TS)) s: TimescaleDB $(tail -n1 <<<"$VERSION_INFO") on PostgreSQL $("$PG_CONFIG" --version | awk '{print $2}')"
