#!/usr/bin/env bash
# CI: a PostgreSQL cluster of its own for the store tests (never the system's cluster): data under
# $BURST_PG_DIR, owned by postgres when run as root (else by the caller), listening on 127.0.0.1 and
# a unix socket in $BURST_PG_DIR/run only. The test role burst_test (CREATEDB) logs in with SCRAM and
# a generated password kept in a libpq passfile; the DSN names that passfile, never the password.
# Test data only: fsync is off. Idempotent: a running cluster is reused, a stopped one started again.
#
#   bash .ci/postgres-setup.sh                 # set up and start; prints the DSN, writes $BURST_PG_DSN_FILE
#   export BURST_TEST_POSTGRES_DSN="$(cat /run/burst-ci-pg.dsn)"
#   bash .ci/postgres-setup.sh stop            # stop it (the data directory stays)
#
# BURST_PG_DIR (default /var/lib/burst-ci-pg), BURST_PG_PORT (default: the cluster's port, else 55432
# if free, else any free port; 0: any free port) and BURST_PG_DSN_FILE (default /run/burst-ci-pg.dsn) choose another
# cluster: the tests' fixture starts a throwaway one in a temporary directory that way.
set -euo pipefail

dir=${BURST_PG_DIR:-/var/lib/burst-ci-pg}
dsn_file=${BURST_PG_DSN_FILE:-/run/burst-ci-pg.dsn}
bin=${BURST_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
data=$dir/data
sock=$dir/run
role=burst_test

say() { printf 'postgres-setup: %s\n' "$*" >&2; }
die() {
  say "FAILED: $*"
  [ -f "$dir/server.log" ] && tail -n 30 "$dir/server.log" >&2
  exit 1
}
[ -x "$bin/pg_ctl" ] || die "no PostgreSQL server binaries (apt-get install postgresql; or set BURST_PG_BIN)"

if [ "$(id -u)" -eq 0 ]; then
  owner=postgres
  as_owner() { runuser -u postgres -- "$@"; }
else
  owner=$(id -un)
  as_owner() { "$@"; }
fi
pg_ctl() { as_owner "$bin/pg_ctl" -D "$data" -l "$dir/server.log" "$@"; }
psql_admin() { as_owner "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -d postgres "$@"; }

port_free() {
  python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

if [ "${1:-}" = stop ]; then
  if [ -f "$data/postmaster.pid" ]; then pg_ctl stop -m fast -w >/dev/null; say "stopped $data"; fi
  exit 0
fi

install -d -m 0755 "$dir"
install -d -o "$owner" -m 0700 "$data"
install -d -o "$owner" -m 0755 "$sock"
touch "$dir/server.log" && chown "$owner" "$dir/server.log"

if [ ! -s "$data/PG_VERSION" ]; then
  say "initdb $data"
  as_owner "$bin/initdb" -D "$data" -U "$owner" --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null || die "initdb"
fi

conf=$data/postgresql.auto.conf
port=$(sed -n "s/^port = '\([0-9]*\)'$/\1/p" "$conf" | tail -n 1)
running=$(pg_ctl status >/dev/null 2>&1 && echo yes || echo no)
if [ "$running" = no ]; then
  if [ -n "${BURST_PG_PORT:-}" ]; then
    port=$BURST_PG_PORT
    [ "$port" != 0 ] || port=$(free_port)
  elif [ -z "$port" ] || ! port_free "$port"; then
    port=55432
    port_free "$port" || port=$(free_port)
  fi
  cat >"$conf" <<EOF
# Written by .ci/postgres-setup.sh: a test cluster, not durable.
port = '$port'
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
fsync = 'off'
synchronous_commit = 'off'
full_page_writes = 'off'
max_connections = '200'
# An autovacuum worker in a database makes a non-superuser's DROP DATABASE ... WITH (FORCE) fail
# ("must be a member of the role whose process is being terminated"): test databases live seconds.
autovacuum = 'off'
EOF
  chown "$owner" "$conf"
  pg_ctl start -w -t 60 >/dev/null || die "pg_ctl start"
  say "started on 127.0.0.1:$port"
else
  say "already running on 127.0.0.1:$port"
fi

# The role's password: generated once, kept in the passfile (a second run sets the same one again).
passfile=${dsn_file%.dsn}.pgpass
password=$(cut -d: -f5 "$passfile" 2>/dev/null || true)
[ -n "$password" ] || password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
psql_admin <<EOF || die "creating role $role"
SELECT 'CREATE ROLE $role LOGIN CREATEDB' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role')
\gexec
ALTER ROLE $role PASSWORD '$password';
GRANT pg_signal_backend TO $role;
EOF
(umask 077 && printf '127.0.0.1:%s:*:%s:%s\n' "$port" "$role" "$password" >"$passfile")
dsn="postgresql://$role@127.0.0.1:$port/postgres?passfile=$passfile"
printf '%s\n' "$dsn" >"$dsn_file"
printf '%s\n' "$dsn"
