#!/usr/bin/env bash
# The celery broker of the distributed executor on one machine: a Redis server (Debian's redis-server) in the
# project's data directory, on 127.0.0.1, password-protected, plus the celery executor/worker config that points at it.
#
#   deploy/celery/local-redis.sh start     # start (first use: generate the password), write celery.yaml + celery.env
#   deploy/celery/local-redis.sh status    # running or not (exit 0 / 3)
#   deploy/celery/local-redis.sh env       # the line to `source` before starting Dagster or workers
#   deploy/celery/local-redis.sh stop      # shut down (SHUTDOWN NOSAVE: queued tasks are not kept)
#
# Settings (environment): LSTM_PIPELINE_REDIS_DIR (default <project>/data/redis), LSTM_PIPELINE_REDIS_PORT (6380),
# LSTM_PIPELINE_REDIS_BIN (redis-server's folder, default /usr/bin).
#
# Written under LSTM_PIPELINE_REDIS_DIR: password (0600), redis.conf (0600), redis.pid, redis.log, celery.yaml
# (0600: the executor config block `dagster-celery worker start -y` reads) and celery.env (0600:
# DAGSTER_CELERY_BROKER_URL and DAGSTER_CELERY_BACKEND_URL, which deploy/celery/definitions.py's executor reads).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REDIS_DIR="${LSTM_PIPELINE_REDIS_DIR:-$ROOT/data/redis}"
REDIS_PORT="${LSTM_PIPELINE_REDIS_PORT:-6380}"
REDIS_BIN="${LSTM_PIPELINE_REDIS_BIN:-/usr/bin}"
PID_FILE="$REDIS_DIR/redis.pid"
ENV_FILE="$REDIS_DIR/celery.env"

fail() { echo "local-redis: $*" >&2; exit 1; }

require_binaries() {
  [ -x "$REDIS_BIN/redis-server" ] && [ -x "$REDIS_BIN/redis-cli" ] \
    || fail "no redis-server in $REDIS_BIN; install Debian's redis-server (apt-get install -y redis-server) or set LSTM_PIPELINE_REDIS_BIN."
}

cli() { REDISCLI_AUTH="$(cat "$REDIS_DIR/password")" "$REDIS_BIN/redis-cli" -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

is_running() {
  [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null && [ "$(cli ping 2>/dev/null)" = "PONG" ]
}

write_config() {
  umask 077
  mkdir -p "$REDIS_DIR"
  [ -s "$REDIS_DIR/password" ] || python3 -c "import secrets; print(secrets.token_urlsafe(24))" > "$REDIS_DIR/password"
  local password; password="$(cat "$REDIS_DIR/password")"
  cat > "$REDIS_DIR/redis.conf" <<CONF
# Written by deploy/celery/local-redis.sh (rewritten on every start).
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
requirepass $password
daemonize yes
pidfile $PID_FILE
logfile $REDIS_DIR/redis.log
dir $REDIS_DIR
# A broker, not a database: no snapshots (tasks of a crashed run are re-run by Dagster's retries, not replayed).
save ""
appendonly no
CONF
  local broker="redis://:$password@127.0.0.1:$REDIS_PORT/0"
  local backend="redis://:$password@127.0.0.1:$REDIS_PORT/1"
  cat > "$REDIS_DIR/celery.yaml" <<YAML
# The celery executor's config block (dagster-celery worker start -y this file): the same broker and result
# backend the runs' executor uses (deploy/celery/definitions.py reads them from celery.env).
execution:
  config:
    broker: "$broker"
    backend: "$backend"
YAML
  cat > "$ENV_FILE" <<ENV
# source this file (after the Postgres profile's dagster.env) wherever runs are launched or workers start.
export DAGSTER_CELERY_BROKER_URL="$broker"
export DAGSTER_CELERY_BACKEND_URL="$backend"
export DAGSTER_CELERY_CONFIG_YAML="$REDIS_DIR/celery.yaml"
ENV
  chmod 600 "$REDIS_DIR/password" "$REDIS_DIR/redis.conf" "$REDIS_DIR/celery.yaml" "$ENV_FILE"
}

start() {
  require_binaries
  if is_running; then
    echo "local-redis: already running (127.0.0.1:$REDIS_PORT)"
  else
    write_config
    "$REDIS_BIN/redis-server" "$REDIS_DIR/redis.conf"
    for _ in $(seq 1 100); do
      is_running && break
      sleep 0.1
    done
    is_running || { tail -n 20 "$REDIS_DIR/redis.log" >&2 || true; fail "redis-server did not start (log above, also in $REDIS_DIR/redis.log); is port $REDIS_PORT free? set LSTM_PIPELINE_REDIS_PORT."; }
  fi
  echo "local-redis: running on 127.0.0.1:$REDIS_PORT"
  echo "local-redis: worker config $REDIS_DIR/celery.yaml"
  echo "local-redis: before starting Dagster or workers, run: source $ENV_FILE"
}

stop() {
  require_binaries
  if ! is_running; then
    echo "local-redis: not running"
    return 0
  fi
  local pid; pid="$(cat "$PID_FILE")"
  cli shutdown nosave >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "redis-server (pid $pid) did not stop; see $REDIS_DIR/redis.log."
  echo "local-redis: stopped"
}

status() {
  require_binaries
  if is_running; then
    echo "local-redis: running (127.0.0.1:$REDIS_PORT, pid $(cat "$PID_FILE"))"
    return 0
  fi
  echo "local-redis: not running"
  return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) [ -f "$ENV_FILE" ] || fail "no $ENV_FILE yet; run '$0 start' first."; echo "source $ENV_FILE" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
