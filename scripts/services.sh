#!/usr/bin/env bash
# Starts and stops the real services the integration tests, the demo and the
# benchmark use: a private PostgreSQL cluster and the tansu Kafka broker, both
# on 127.0.0.1. Nothing system-wide is touched (no systemd unit, no
# /etc/postgresql cluster), so it works the same in CI and on a laptop.
#
#   scripts/services.sh up       start both (idempotent; waits until they answer)
#   scripts/services.sh down     stop both
#   scripts/services.sh status   print what is running
#   scripts/services.sh env      print the environment the tests read
#
# Ports: TAXISTREAM_PG_PORT (55432) and TAXISTREAM_KAFKA_PORT (9092).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/env.sh
. "$here/env.sh"

PG_PORT="${TAXISTREAM_PG_PORT:-55432}"
KAFKA_PORT="${TAXISTREAM_KAFKA_PORT:-9092}"
PG_USER=taxistream
PG_PASSWORD=taxistream
PG_DB=taxistream
RUN_DIR="$TAXISTREAM_HOME/run"

# PostgreSQL refuses to run as root, and root's home is not traversable by
# other users, so as root the cluster lives outside it and belongs to the
# `postgres` system user that Debian's package creates.
if [ "$(id -u)" -eq 0 ]; then
  PG_OWNER=postgres
  PG_HOME="${TAXISTREAM_PG_DIR:-/var/tmp/taxistream/pg}"
else
  PG_OWNER="$(id -un)"
  PG_HOME="${TAXISTREAM_PG_DIR:-$TAXISTREAM_HOME/pg}"
fi
PG_DATA="$PG_HOME/data"
PG_LOG="$PG_HOME/postgres.log"
# A private CA and a server certificate for 127.0.0.1/localhost, so clients
# can be tested with sslmode=verify-full (plain connections still work).
PG_TLS="$PG_HOME/tls"
TANSU_LOG="$RUN_DIR/tansu.log"
TANSU_PID="$RUN_DIR/tansu.pid"

log() { printf '==> services: %s\n' "$*" >&2; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }

as_pg_owner() {
  if [ "$(id -un)" = "$PG_OWNER" ]; then "$@"; else runuser -u "$PG_OWNER" -- "$@"; fi
}

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  done
  die "PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/setup.sh)"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port="$1" what="$2" i
  for i in $(seq 1 150); do
    port_open "$port" && return 0
    sleep 0.2
  done
  die "$what did not open 127.0.0.1:$port within 30s"
}

pg_tls() {
  [ -s "$PG_TLS/server.key" ] && [ -s "$PG_TLS/ca.crt" ] && return 0
  command -v openssl >/dev/null || die "openssl not found (run scripts/setup.sh)"
  mkdir -p "$PG_TLS"
  (
    cd "$PG_TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=taxistream test CA" \
      -keyout ca.key -out ca.crt >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout server.key -out server.csr >/dev/null 2>&1
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile san.ext -out server.crt >/dev/null 2>&1
    rm -f server.csr san.ext ca.srl
  ) || die "could not create the test TLS certificates in $PG_TLS"
  chmod 0600 "$PG_TLS/server.key"
  [ "$(id -u)" -eq 0 ] && chown "$PG_OWNER" "$PG_TLS/server.key" "$PG_TLS/server.crt"
  chmod 0644 "$PG_TLS/ca.crt" "$PG_TLS/server.crt"
}

pg_up() {
  local bin
  bin="$(pg_bin)"
  mkdir -p "$PG_HOME"
  [ "$(id -u)" -eq 0 ] && chown "$PG_OWNER" "$PG_HOME"
  pg_tls
  if [ ! -s "$PG_DATA/PG_VERSION" ]; then
    log "initdb $PG_DATA"
    # Local socket connections are only possible for the cluster owner (the
    # socket lives in the 0700 data directory), so trust there is safe; TCP
    # needs a password.
    as_pg_owner "$bin/initdb" -D "$PG_DATA" -U postgres --auth-local=trust \
      --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if as_pg_owner "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    log "postgres already running on 127.0.0.1:$PG_PORT"
  else
    log "starting postgres on 127.0.0.1:$PG_PORT"
    as_pg_owner "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PG_DATA -c fsync=off -c max_connections=200 -c ssl=on -c ssl_cert_file=$PG_TLS/server.crt -c ssl_key_file=$PG_TLS/server.key" \
      start >/dev/null || { tail -20 "$PG_LOG" >&2; die "postgres did not start"; }
  fi
  # Role and database: created once, idempotently. CREATEDB lets each test
  # work in a database of its own.
  as_pg_owner "$bin/psql" -h "$PG_DATA" -p "$PG_PORT" -U postgres -d postgres -qtA -v ON_ERROR_STOP=1 <<SQL >/dev/null
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB') \gexec
SQL
}

pg_down() {
  [ -s "$PG_DATA/PG_VERSION" ] || return 0
  local bin
  bin="$(pg_bin)"
  if as_pg_owner "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    log "stopping postgres"
    as_pg_owner "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
  fi
}

tansu_running() { [ -s "$TANSU_PID" ] && kill -0 "$(cat "$TANSU_PID")" 2>/dev/null; }

kafka_up() {
  mkdir -p "$RUN_DIR"
  if tansu_running; then
    log "tansu already running on 127.0.0.1:$KAFKA_PORT (pid $(cat "$TANSU_PID"))"
    return
  fi
  if port_open "$KAFKA_PORT"; then
    die "127.0.0.1:$KAFKA_PORT is taken by a process this script did not start"
  fi
  local tansu="$TAXISTREAM_HOME/tansu/bin/tansu"
  [ -x "$tansu" ] || die "tansu not installed at $tansu (run scripts/setup.sh)"
  log "starting tansu on 127.0.0.1:$KAFKA_PORT"
  # The memory engine keeps every run independent: tests create their own topics.
  nohup "$tansu" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ >"$TANSU_LOG" 2>&1 </dev/null &
  echo $! >"$TANSU_PID"
  if ! wait_port "$KAFKA_PORT" tansu; then
    tail -20 "$TANSU_LOG" >&2
    exit 1
  fi
}

kafka_down() {
  if tansu_running; then
    local pid
    pid="$(cat "$TANSU_PID")"
    log "stopping tansu (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$TANSU_PID"
}

print_env() {
  cat <<EOF
export DATABASE_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
export KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
export PG_TLS_CA=$PG_TLS/ca.crt
EOF
}

status() {
  local bin
  bin="$(pg_bin)"
  if [ -s "$PG_DATA/PG_VERSION" ] && as_pg_owner "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    echo "postgres: running on 127.0.0.1:$PG_PORT ($PG_DATA)"
  else
    echo "postgres: stopped"
  fi
  if tansu_running; then
    echo "tansu:    running on 127.0.0.1:$KAFKA_PORT (pid $(cat "$TANSU_PID"))"
  else
    echo "tansu:    stopped"
  fi
}

case "${1:-}" in
  up) pg_up; kafka_up; print_env ;;
  down) kafka_down; pg_down ;;
  status) status ;;
  env) print_env ;;
  *) die "usage: $0 up|down|status|env" ;;
esac
