#!/usr/bin/env bash
# The Postgres deployment profile on one machine: a PostgreSQL cluster in the project's data directory, on
# 127.0.0.1, holding Dagster's run, event-log and schedule storage (database "dagster") and, when the pipeline's
# tables use storage.backend = "postgres", those tables too (database "lstm_pipeline").
#
#   deploy/postgres/local-postgres.sh start     # init on first use, start, create the databases, write the config
#   deploy/postgres/local-postgres.sh status    # running or not (exit 0 / 3), and where
#   deploy/postgres/local-postgres.sh env       # the line to `source` before dagster dev / daemon / workers
#   deploy/postgres/local-postgres.sh stop      # fast shutdown (open transactions roll back, data stays)
#
# Settings (environment): LSTM_PIPELINE_PG_DIR (default <project>/data/postgres), LSTM_PIPELINE_PG_PORT (5433),
# LSTM_PIPELINE_PG_BIN (default: the newest /usr/lib/postgresql/<version>/bin, Debian's postgresql), LSTM_PIPELINE_MAX_CONCURRENT_RUNS (1:
# the DuckDB tables take one writer; raise it with storage.backend = "postgres").
#
# Written under LSTM_PIPELINE_PG_DIR: cluster/ (PGDATA), socket/ (the Unix socket, owner only), postgres.log,
# password (generated on init, mode 0600), dagster_home/dagster.yaml (the instance config) and dagster.env (mode
# 0600: DAGSTER_HOME, the password, the event batching settings, LSTM_PIPELINE_POSTGRES_URL). Run as root, the
# server runs as the "postgres" user (runuser), as PostgreSQL refuses to run as root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PG_DIR="${LSTM_PIPELINE_PG_DIR:-$ROOT/data/postgres}"
PG_PORT="${LSTM_PIPELINE_PG_PORT:-5433}"
newest_pg_bin() {  # Debian installs each major version side by side; take the newest
  local best="" version
  for dir in /usr/lib/postgresql/*/bin; do
    version="${dir#/usr/lib/postgresql/}"; version="${version%/bin}"
    [[ "$version" =~ ^[0-9]+$ ]] || continue
    if [ -z "$best" ] || [ "$version" -gt "${best#/usr/lib/postgresql/}" ] 2>/dev/null; then best="/usr/lib/postgresql/$version"; fi
  done
  echo "${best:-/usr/lib/postgresql/15}/bin"
}
PG_BIN="${LSTM_PIPELINE_PG_BIN:-$(newest_pg_bin)}"
MAX_RUNS="${LSTM_PIPELINE_MAX_CONCURRENT_RUNS:-1}"
PG_USER="lstm_pipeline"
DAGSTER_DB="dagster"
TABLES_DB="lstm_pipeline"
CLUSTER="$PG_DIR/cluster"
SOCKET="$PG_DIR/socket"
LOG="$PG_DIR/postgres.log"
ENV_FILE="$PG_DIR/dagster.env"
DAGSTER_HOME_DIR="$PG_DIR/dagster_home"

fail() { echo "local-postgres: $*" >&2; exit 1; }

# PostgreSQL refuses to run as root: as root, every server-side command runs as the postgres user.
as_server() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

require_binaries() {
  [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] || fail "no PostgreSQL at $PG_BIN; install Debian's postgresql (apt-get install -y postgresql) or set LSTM_PIPELINE_PG_BIN to its bin folder."
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    fail "running as root needs the 'postgres' user to run the server; install Debian's postgresql package, which creates it."
  fi
}

psql_admin() {  # psql over the owner-only Unix socket, as the cluster's superuser
  as_server "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKET" -p "$PG_PORT" -U "$PG_USER" -d postgres "$@"
}

is_running() { as_server "$PG_BIN/pg_ctl" -D "$CLUSTER" status >/dev/null 2>&1; }

init_cluster() {
  [ -f "$CLUSTER/PG_VERSION" ] && return 0
  echo "local-postgres: initializing a cluster in $CLUSTER"
  mkdir -p "$PG_DIR" "$CLUSTER" "$SOCKET"
  umask 077
  [ -s "$PG_DIR/password" ] || python3 -c "import secrets; print(secrets.token_urlsafe(24))" > "$PG_DIR/password"
  chmod 600 "$PG_DIR/password"
  if [ "$(id -u)" = 0 ]; then
    chmod 755 "$PG_DIR"
    chown postgres: "$CLUSTER" "$SOCKET"
    touch "$LOG" && chown postgres: "$LOG"
  fi
  chmod 700 "$CLUSTER" "$SOCKET"
  as_server test -w "$CLUSTER" || fail "the postgres user cannot reach $CLUSTER (a parent folder is private); set LSTM_PIPELINE_PG_DIR to a folder every user can traverse."
  # Local (Unix-socket) connections are trusted: the socket's folder is mode 0700, so only the server's own OS user
  # (and root) can reach it; TCP on 127.0.0.1 needs the password (scram-sha-256).
  # initdb reads the password from a file only the server's user can read (in the private socket folder), removed
  # right after: the password never shows in ps.
  local pwfile="$SOCKET/.initdb-password"
  cp "$PG_DIR/password" "$pwfile"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$pwfile"; fi
  as_server "$PG_BIN/initdb" -D "$CLUSTER" -U "$PG_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
    || { rm -f "$pwfile"; cat "$PG_DIR/initdb.log" >&2; fail "initdb failed (log above, also in $PG_DIR/initdb.log)."; }
  rm -f "$pwfile"
}

write_instance_config() {
  mkdir -p "$DAGSTER_HOME_DIR"
  local password; password="$(cat "$PG_DIR/password")"
  cat > "$DAGSTER_HOME_DIR/dagster.yaml" <<YAML
# Written by deploy/postgres/local-postgres.sh start (rewritten on every start): the Postgres deployment profile.
# Run, event-log and schedule storage live in PostgreSQL (dagster-postgres); the password comes from the
# environment (source $ENV_FILE), never from this file.
storage:
  postgres:
    postgres_db:
      username: $PG_USER
      password:
        env: DAGSTER_PG_PASSWORD
      hostname: 127.0.0.1
      port: $PG_PORT
      db_name: $DAGSTER_DB
      # SQLAlchemy 2.1 reads a bare postgresql:// as the psycopg 3 driver; name the driver dagster-postgres is
      # tested with.
      scheme: postgresql+psycopg2

telemetry:
  enabled: false
nux:
  enabled: false

# Runs queue; with the DuckDB pipeline tables only one may write at a time (LSTM_PIPELINE_MAX_CONCURRENT_RUNS=1);
# with storage.backend = "postgres" several runs can write at once.
concurrency:
  runs:
    max_concurrent_runs: $MAX_RUNS

# Run workers are subprocesses of the daemon/webserver and inherit their environment, so the batching settings
# exported by dagster.env reach every process that creates or executes a run.
run_launcher:
  module: dagster.core.launcher
  class: DefaultRunLauncher

sensors:
  use_threads: false

retention:
  sensor:
    purge_after_days:
      skipped: 3
      failure: 30
      success: -1
YAML
  umask 077
  cat > "$ENV_FILE" <<ENV
# source this file in every shell that runs dagster dev, dagster-daemon, dagster-webserver or a run worker.
export DAGSTER_HOME="$DAGSTER_HOME_DIR"
export DAGSTER_PG_PASSWORD="$password"
# Events are written to PostgreSQL in batches of up to 1000 instead of one statement each.
export DAGSTER_EVENT_BATCH_SIZE=1000
# One "planned" event per asset and run (the run's partition subset) instead of one per partition. Trade-off: a
# failed run does not mark its partitions failed in the UI; run_failure_alert_sensor's alert names them instead.
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1
# The pipeline's own tables, when the config sets storage.backend = "postgres".
export LSTM_PIPELINE_POSTGRES_URL="postgresql://$PG_USER:$password@127.0.0.1:$PG_PORT/$TABLES_DB"
ENV
  chmod 600 "$ENV_FILE"
}

create_databases() {
  local db
  for db in "$DAGSTER_DB" "$TABLES_DB"; do
    if [ -z "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
      psql_admin -c "CREATE DATABASE $db OWNER $PG_USER"
    fi
  done
}

start() {
  require_binaries
  init_cluster
  if is_running; then
    echo "local-postgres: already running ($CLUSTER)"
  else
    as_server "$PG_BIN/pg_ctl" -D "$CLUSTER" -l "$LOG" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories='$SOCKET'" >/dev/null \
      || { tail -n 20 "$LOG" >&2; fail "the server did not start (log above, also in $LOG); is port $PG_PORT free? set LSTM_PIPELINE_PG_PORT."; }
  fi
  create_databases
  write_instance_config
  echo "local-postgres: running on 127.0.0.1:$PG_PORT (databases $DAGSTER_DB, $TABLES_DB)"
  echo "local-postgres: instance config $DAGSTER_HOME_DIR/dagster.yaml"
  echo "local-postgres: before starting Dagster, run: source $ENV_FILE"
}

stop() {
  require_binaries
  if [ ! -f "$CLUSTER/PG_VERSION" ] || ! is_running; then
    echo "local-postgres: not running"
    return 0
  fi
  as_server "$PG_BIN/pg_ctl" -D "$CLUSTER" -m fast -w -t 60 stop >/dev/null
  echo "local-postgres: stopped ($CLUSTER)"
}

status() {
  require_binaries
  if [ -f "$CLUSTER/PG_VERSION" ] && is_running; then
    echo "local-postgres: running ($CLUSTER, 127.0.0.1:$PG_PORT)"
    return 0
  fi
  echo "local-postgres: not running ($CLUSTER)"
  return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) [ -f "$ENV_FILE" ] || fail "no $ENV_FILE yet; run '$0 start' first."; echo "source $ENV_FILE" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
