#!/usr/bin/env bash
# Celery workers for the celery deployment profile: each is `dagster-celery worker start` (the dagster_celery app,
# listening on the broker's "dagster" queue) running one step at a time (--pool=solo: TensorFlow and the DuckDB or
# Postgres connections stay in one process; add workers, here or on other machines, for more parallel steps).
#
#   source data/postgres/dagster.env; source data/redis/celery.env     # the instance, batching and broker settings
#   deploy/celery/workers.sh start [N]    # N workers (default 2) in the background, logs in data/celery/
#   deploy/celery/workers.sh status
#   deploy/celery/workers.sh stop         # warm shutdown: each finishes its current step, then exits
#
# On another machine: the same code, the same settings (LSTM_PIPELINE_*), the same DAGSTER_HOME instance config
# (Postgres) and the same celery.yaml; run `dagster-celery worker start -A dagster_celery.app -y celery.yaml
# -n <name> -- --pool=solo` under your process supervisor.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORKER_DIR="${LSTM_PIPELINE_CELERY_DIR:-$ROOT/data/celery}"
# The project's virtual environment first: dagster-celery starts the `celery` command from PATH.
if [ -x "$ROOT/.venv/bin/dagster-celery" ]; then export PATH="$ROOT/.venv/bin:$PATH"; fi
command -v dagster-celery >/dev/null || echo "celery-workers: dagster-celery is not installed; pip install -e . in the project." >&2

fail() { echo "celery-workers: $*" >&2; exit 1; }

require_env() {
  [ -n "${DAGSTER_HOME:-}" ] || fail "DAGSTER_HOME is not set; source the Postgres profile's dagster.env (deploy/postgres/local-postgres.sh env) first."
  [ -n "${DAGSTER_CELERY_CONFIG_YAML:-}" ] && [ -f "$DAGSTER_CELERY_CONFIG_YAML" ] \
    || fail "DAGSTER_CELERY_CONFIG_YAML does not name a file; source the broker's celery.env (deploy/celery/local-redis.sh env) first."
  [ -n "${DAGSTER_EVENT_BATCH_SIZE:-}" ] && [ -n "${DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS:-}" ] \
    || echo "celery-workers: the event batching settings are not set, so these workers write Dagster's events one at a time; source the Postgres profile's dagster.env first." >&2
}

start() {
  require_env
  local count="${1:-2}"
  mkdir -p "$WORKER_DIR"
  # The instance's tables first (idempotent): workers that create them at once on a fresh database collide
  # ("type run_tags already exists") and one of them exits.
  (cd "$ROOT" && dagster instance migrate >"$WORKER_DIR/instance-migrate.log" 2>&1) \
    || fail "dagster instance migrate failed (see $WORKER_DIR/instance-migrate.log); check DAGSTER_HOME's Postgres settings."
  for i in $(seq 1 "$count"); do
    local pid_file="$WORKER_DIR/worker-$i.pid"
    if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      echo "celery-workers: worker-$i already running (pid $(cat "$pid_file"))"
      continue
    fi
    # Its own session (setsid): stop signals the wrapper and the celery process it starts, and nothing else.
    (cd "$ROOT" && exec setsid dagster-celery worker start -A dagster_celery.app -y "$DAGSTER_CELERY_CONFIG_YAML" \
      -n "lstm-worker-$i" -- --pool=solo >"$WORKER_DIR/worker-$i.log" 2>&1) &
    echo $! > "$pid_file"
    echo "celery-workers: started worker-$i (pid $!, log $WORKER_DIR/worker-$i.log)"
  done
}

stop() {
  local pid_file pid
  shopt -s nullglob
  for pid_file in "$WORKER_DIR"/worker-*.pid; do
    pid="$(cat "$pid_file")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
      for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
      done
      echo "celery-workers: stopped $(basename "$pid_file" .pid)"
    fi
    rm -f "$pid_file"
  done
}

status() {
  local pid_file running=0
  shopt -s nullglob
  for pid_file in "$WORKER_DIR"/worker-*.pid; do
    if kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      echo "celery-workers: $(basename "$pid_file" .pid) running (pid $(cat "$pid_file"))"
      running=$((running + 1))
    fi
  done
  [ "$running" -gt 0 ] || { echo "celery-workers: none running"; return 3; }
}

case "${1:-}" in
  start) start "${2:-2}" ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start [N]|stop|status" >&2; exit 2 ;;
esac
