#!/usr/bin/env bash
# Makes sure the system programs the tests and the demo need are installed.
#
#   bash scripts/ensure-system-deps.sh [nats|postgres|python|faketime|all]     (default: all)
#
#   nats      nats-server (JetStream broker), Debian package `nats-server`.
#   postgres  PostgreSQL server binaries (initdb, postgres), Debian package `postgresql`.
#             Skipped when LIAISON_TEST_DATABASE_URL is set (tests then use that server).
#   python    jwcrypto for Debian's /usr/bin/python3 (the Python partner of the interop test),
#             Debian package `python3-jwcrypto`.
#   faketime  libfaketime (the fault suite shifts a gateway's clock with it), Debian package
#             `faketime`.
#
# Idempotent: when everything is present it only looks, and returns in well under a second.
# When something is missing: as root it is installed with apt-get; otherwise the script says
# what to install and exits 1.
set -euo pipefail

usage() {
  sed -n '2,16s/^# \{0,1\}//p' "$0"
}

what="${1:-all}"
case "$what" in
  nats | postgres | python | faketime | all) ;;
  -h | --help)
    usage
    exit 0
    ;;
  *)
    echo "ensure-system-deps: unknown argument '$what'" >&2
    usage >&2
    exit 2
    ;;
esac

is_root() { [ "$(id -u)" -eq 0 ]; }

apt_updated=0
# apt_install PACKAGE... — root only; runs `apt-get update` at most once per run.
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-system-deps: apt-get not available; install $* with your package manager" >&2
    return 1
  fi
  if [ "$apt_updated" -eq 0 ]; then
    apt-get update -qq || return 1
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# Debian installs nats-server in /usr/sbin, which is not on a normal user's PATH.
find_nats() {
  local candidate
  if candidate="$(command -v nats-server 2>/dev/null)"; then
    echo "$candidate"
    return 0
  fi
  for candidate in /usr/local/sbin/nats-server /usr/sbin/nats-server; do
    if [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# Prints the directory holding both initdb and postgres: PATH first, then the highest
# /usr/lib/postgresql/<version>/bin (Debian keeps them off PATH).
find_pg_bindir() {
  local initdb dir
  if initdb="$(command -v initdb 2>/dev/null)" && command -v postgres >/dev/null 2>&1; then
    dirname "$initdb"
    return 0
  fi
  while IFS= read -r dir; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
      echo "$dir"
      return 0
    fi
  done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -V -r)
  return 1
}

failed=0

nats_version() {
  local v
  v="$("$1" --version 2>/dev/null)" || v="version unknown"
  echo "${v#nats-server: }"
}

ensure_nats() {
  local bin
  if bin="$(find_nats)"; then
    echo "nats-server: found $bin ($(nats_version "$bin"))"
    return 0
  fi
  if ! is_root; then
    echo "nats-server: MISSING — install it as root: apt-get install nats-server" \
      "(or run this script as root)" >&2
    failed=1
    return 0
  fi
  echo "nats-server: not found, installing with apt-get (nats-server)..."
  if apt_install nats-server && bin="$(find_nats)"; then
    echo "nats-server: installed $bin ($(nats_version "$bin"))"
  else
    echo "nats-server: installation FAILED (apt-get install nats-server)" >&2
    failed=1
  fi
}

ensure_postgres() {
  local dir
  if [ -n "${LIAISON_TEST_DATABASE_URL:-}" ]; then
    echo "postgres: skipped (LIAISON_TEST_DATABASE_URL is set)"
    return 0
  fi
  if dir="$(find_pg_bindir)"; then
    echo "postgres: found initdb and postgres in $dir ($("$dir/postgres" --version 2>/dev/null || echo 'version unknown'))"
    return 0
  fi
  if ! is_root; then
    echo "postgres: MISSING initdb/postgres — install them as root: apt-get install postgresql" \
      "(or run this script as root, or set LIAISON_TEST_DATABASE_URL)" >&2
    failed=1
    return 0
  fi
  echo "postgres: not found, installing with apt-get (postgresql)..."
  # Debian's package also creates (and, where an init system allows, starts) a 'main' cluster.
  # We do not use it, so a failure in that post-install step is not fatal as long as the
  # binaries are there; what counts is the check below.
  local apt_status=0
  apt_install postgresql || apt_status=$?
  if dir="$(find_pg_bindir)"; then
    if [ "$apt_status" -ne 0 ]; then
      echo "postgres: apt-get exited with status $apt_status (probably Debian's default cluster" \
        "setup, which we do not use); the binaries are installed, continuing" >&2
    fi
    echo "postgres: installed initdb and postgres in $dir ($("$dir/postgres" --version 2>/dev/null || echo 'version unknown'))"
  else
    echo "postgres: installation FAILED (apt-get install postgresql)" >&2
    failed=1
  fi
}

# The interop test runs Debian's interpreter, not whichever python3 is first on PATH (a pyenv or
# venv build would not see Debian's python3-* packages).
SYSTEM_PYTHON=/usr/bin/python3

jwcrypto_version() {
  dpkg-query -W -f='${Version}' python3-jwcrypto 2>/dev/null || echo "version unknown"
}

ensure_python() {
  if [ -x "$SYSTEM_PYTHON" ] && "$SYSTEM_PYTHON" -c 'import jwcrypto' >/dev/null 2>&1; then
    echo "python3-jwcrypto: found for $SYSTEM_PYTHON ($(jwcrypto_version))"
    return 0
  fi
  if ! is_root; then
    echo "python3-jwcrypto: MISSING for $SYSTEM_PYTHON — install it as root:" \
      "apt-get install python3-jwcrypto (or run this script as root)" >&2
    failed=1
    return 0
  fi
  echo "python3-jwcrypto: not found for $SYSTEM_PYTHON, installing with apt-get (python3-jwcrypto)..."
  if apt_install python3-jwcrypto && "$SYSTEM_PYTHON" -c 'import jwcrypto' >/dev/null 2>&1; then
    echo "python3-jwcrypto: installed for $SYSTEM_PYTHON ($(jwcrypto_version))"
  else
    echo "python3-jwcrypto: installation FAILED (apt-get install python3-jwcrypto)" >&2
    failed=1
  fi
}

# libfaketime's multi-threaded library (a Node process has threads), where Debian puts it.
find_faketime() {
  local candidate
  for candidate in /usr/lib/*/faketime/libfaketimeMT.so.1 /usr/lib/faketime/libfaketimeMT.so.1; do
    if [ -f "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

faketime_version() {
  dpkg-query -W -f='${Version}' libfaketime 2>/dev/null || echo "version unknown"
}

ensure_faketime() {
  local lib
  if lib="$(find_faketime)"; then
    echo "libfaketime: found $lib ($(faketime_version))"
    return 0
  fi
  if ! is_root; then
    echo "libfaketime: MISSING — install it as root: apt-get install faketime" \
      "(or run this script as root)" >&2
    failed=1
    return 0
  fi
  echo "libfaketime: not found, installing with apt-get (faketime)..."
  if apt_install faketime && lib="$(find_faketime)"; then
    echo "libfaketime: installed $lib ($(faketime_version))"
  else
    echo "libfaketime: installation FAILED (apt-get install faketime)" >&2
    failed=1
  fi
}

case "$what" in
  nats) ensure_nats ;;
  postgres) ensure_postgres ;;
  python) ensure_python ;;
  faketime) ensure_faketime ;;
  all)
    ensure_nats
    ensure_postgres
    ensure_python
    ensure_faketime
    ;;
esac

exit "$failed"
