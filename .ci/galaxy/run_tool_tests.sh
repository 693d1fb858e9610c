#!/usr/bin/env bash
# The Galaxy step of CI: a real Galaxy 26.1 server runs every <test> of galaxy_tool/virnucpro.xml,
# then galaxy-tool-util's linters (XSD included) check the wrapper.
#
#   .ci/galaxy/run_tool_tests.sh [--queue] [PROJECT_VENV]
#
# PROJECT_VENV (default: $VIRNUCPRO_VENV, else .venv) is the venv whose bin/ holds `virnucpro`;
# it goes first on the PATH of the server and so of its jobs (dependency resolution is off).
# Galaxy installs from the registry into .ci-cache/ (or $VIRNUCPRO_CI_CACHE) the first time,
# and is reused after that. The server listens on 127.0.0.1 only, makes no outbound connection,
# keeps its state in a fresh folder per run, and is stopped by its pid when the script ends,
# however it ends. Prints "N passed, N failed" for the Galaxy tests; exits non-zero when a test
# fails, is skipped or does not run, when the linter reports an error or a warning, or when the
# rendered command does not pass check_command.py.
#
# --queue: the same tests with the wrapper in queue mode: a private redis-server on a free
# loopback port (never 6379), VIRNUCPRO_REDIS_URL and VIRNUCPRO_DATABASE_URL (SQLite in the run
# folder) in the job environment, and a worker ($VIRNUCPRO_QUEUE_WORKER, default
# `virnucpro worker --burst --models galaxy_tool/test-data/demo_models`, started again each
# time it drains the queue) doing the work.
#
# Environment: GALAXY_TEST_TIMEOUT_S (default 900) bounds galaxy-tool-test;
# GALAXY_KEEP_RUN=1 keeps the run folder (logs, outputs) after a success too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/.ci/galaxy"
TOOL_DIR="$ROOT/galaxy_tool"
TOOL_XML="$TOOL_DIR/virnucpro.xml"
TOOL_ID=virnucpro
QUEUE=0
if [ "${1:-}" = "--queue" ]; then QUEUE=1; shift; fi
VENV="${1:-${VIRNUCPRO_VENV:-.venv}}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
CACHE="${VIRNUCPRO_CI_CACHE:-$ROOT/.ci-cache}"
PINS="$HERE/galaxy-26.1.2-pins.txt"
GALAXY_VENV="$CACHE/galaxy-26.1.2-venv"
PYTHON="${GALAXY_PYTHON:-python3}"
START_TIMEOUT_S=240
TEST_TIMEOUT_S="${GALAXY_TEST_TIMEOUT_S:-900}"

log() { printf '[galaxy %(%H:%M:%S)T] %s\n' -1 "$*"; }
started=$SECONDS

if [ ! -x "$VENV/bin/virnucpro" ]; then
    echo "galaxy: no virnucpro in $VENV/bin (give the project venv as the first argument)" >&2
    exit 1
fi
log "virnucpro: $("$VENV/bin/virnucpro" --version) from $VENV$([ "$QUEUE" = 1 ] && echo ', queue mode')"

# --- Galaxy from the registry, once: its own pin list (one unavailable pin replaced) ----------
pins_sum="$(sha256sum "$PINS" | cut -d' ' -f1)"
if [ "$(cat "$GALAXY_VENV/.installed" 2>/dev/null)" != "$pins_sum" ]; then
    log "installing Galaxy 26.1.2 into $GALAXY_VENV"
    rm -rf "$GALAXY_VENV"
    mkdir -p "$CACHE"
    "$PYTHON" -m venv "$GALAXY_VENV"
    # pip's warnings about this machine's extra (file) indexes are noise; its exit status counts
    set +e
    "$GALAXY_VENV/bin/pip" install --quiet -r "$PINS" 2>&1 | grep -v '^WARNING: Location'
    status=${PIPESTATUS[0]}
    set -e
    [ "$status" -eq 0 ] || { echo "galaxy: pip install failed ($status)" >&2; exit 1; }
    echo "$pins_sum" > "$GALAXY_VENV/.installed"
    log "installed in $((SECONDS - started)) s"
else
    log "Galaxy venv from the cache: $GALAXY_VENV"
fi
GPY="$GALAXY_VENV/bin/python"
helper() { "$GPY" "$HERE/galaxy_helpers.py" "$@"; }

# --- the command as Galaxy renders it, with nasty paths and each env switch (a second) --------
command_ok=0
"$GPY" "$HERE/check_command.py" "$TOOL_XML" || command_ok=1

# --- a fresh server folder; everything started is stopped by its pid at the end --------------
mkdir -p "$CACHE"
RUN="$(mktemp -d "$CACHE/galaxy-run.XXXXXX")"
SERVER_PID=""
REDIS_PID=""
WORKER_PID=""
stop_pid() {  # stop_pid PID WHAT: TERM, up to 30 s, then KILL
    local pid=$1
    { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || return 0
    log "stopping $2 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
    local status=$?
    stop_pid "$SERVER_PID" "the Galaxy server"
    stop_pid "$WORKER_PID" "the queue worker loop"
    stop_pid "$(cat "$RUN/worker.pid" 2> /dev/null)" "the queue worker"
    stop_pid "$REDIS_PID" "the private redis-server"
    if [ "$status" -ne 0 ] && [ -f "$RUN/galaxy.log" ]; then
        echo "---- last lines of the Galaxy log ($RUN/galaxy.log) ----"
        grep -v '^INFO: .* - "GET /api/' "$RUN/galaxy.log" | tail -n 40 || true
    fi
    if [ "${GALAXY_KEEP_RUN:-0}" = 1 ] || [ "$status" -ne 0 ]; then
        log "run folder kept: $RUN"
    else
        rm -rf "$RUN"
    fi
    log "step took $((SECONDS - started)) s"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(helper free-port)"
URL="http://127.0.0.1:$PORT"
BOOTSTRAP_KEY="$("$GPY" -c 'import secrets; print(secrets.token_hex(16))')"
ID_SECRET="$("$GPY" -c 'import secrets; print(secrets.token_hex(16))')"
ADMIN_EMAIL=ci-admin@example.org
mkdir -p "$RUN/data" "$RUN/tmp" "$RUN/tool-data" "$RUN/deps"

cat > "$RUN/tool_conf.xml" <<EOF
<?xml version="1.0"?>
<toolbox monitor="false">
    <section id="virnucpro" name="VirNucPro">
        <tool file="$TOOL_XML" />
    </section>
</toolbox>
EOF

# galaxy_tool/'s test data table, its ${__HERE__} resolved to galaxy_tool/
sed "s|\${__HERE__}|$TOOL_DIR|g" "$TOOL_DIR/tool_data_table_conf.xml.test" \
    > "$RUN/tool_data_table_conf.xml"

# --- queue mode: a private Redis and the queue variables for the jobs -------------------------
JOB_ENV=""
if [ "$QUEUE" = 1 ]; then
    command -v redis-server > /dev/null || { echo "galaxy: --queue needs redis-server" >&2; exit 1; }
    REDIS_PORT="$(helper free-port)"
    while [ "$REDIS_PORT" = 6379 ]; do REDIS_PORT="$(helper free-port)"; done
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$RUN" > "$RUN/redis.log" 2>&1 &
    REDIS_PID=$!
    QUEUE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    QUEUE_DATABASE_URL="sqlite:///$RUN/queue.sqlite"
    JOB_ENV="
            - name: VIRNUCPRO_REDIS_URL
              value: \"$QUEUE_REDIS_URL\"
            - name: VIRNUCPRO_DATABASE_URL
              value: \"$QUEUE_DATABASE_URL\""
    log "queue mode: redis-server (pid $REDIS_PID) on $QUEUE_REDIS_URL, database $QUEUE_DATABASE_URL"
fi

cat > "$RUN/galaxy.yml" <<EOF
galaxy:
  data_dir: $RUN/data
  managed_config_dir: $RUN/data/config
  new_file_path: $RUN/tmp
  database_connection: "sqlite:///$RUN/data/universe.sqlite?isolation_level=IMMEDIATE"
  database_auto_migrate: true
  install_database_connection: "sqlite:///$RUN/data/install.sqlite?isolation_level=IMMEDIATE"
  tool_config_file: $RUN/tool_conf.xml
  tool_data_table_config_path: $RUN/tool_data_table_conf.xml
  tool_data_path: $RUN/tool-data
  tool_dependency_dir: $RUN/deps
  integrated_tool_panel_config: $RUN/data/integrated_tool_panel.xml
  watch_tools: "false"
  watch_tool_data_dir: "false"
  conda_auto_init: false
  conda_auto_install: false
  dependency_resolvers: []
  enable_mulled_containers: false
  enable_celery_tasks: false
  bootstrap_admin_api_key: $BOOTSTRAP_KEY
  admin_users: $ADMIN_EMAIL
  allow_user_creation: true
  id_secret: $ID_SECRET
  allow_path_paste: false
  log_level: INFO
  job_config:
    runners:
      local:
        load: galaxy.jobs.runners.local:LocalJobRunner
        workers: 2
    execution:
      default: local_env
      environments:
        local_env:
          runner: local
          env:
            - name: VIRNUCPRO_CACHE
              value: "$RUN/tmp/virnucpro-cache"$JOB_ENV
EOF

# --- start it: galaxy-web (uvicorn); Gravity refuses root, and CI runs as root ---------------
log "starting Galaxy on $URL (state in $RUN)"
(
    cd "$RUN"
    export PATH="$VENV/bin:$GALAXY_VENV/bin:$PATH"
    exec "$GALAXY_VENV/bin/galaxy-web" -c "$RUN/galaxy.yml" -b "127.0.0.1:$PORT"
) > "$RUN/galaxy.log" 2>&1 &
SERVER_PID=$!
echo "$SERVER_PID" > "$RUN/galaxy.pid"
helper wait "$URL" "$SERVER_PID" "$START_TIMEOUT_S"
log "server up after $((SECONDS - started)) s"
USER_KEY="$(helper user-key "$URL" "$BOOTSTRAP_KEY" "$ADMIN_EMAIL")"

if [ "$QUEUE" = 1 ]; then
    # a burst worker drains the queue and exits: start one after another while Galaxy runs
    # the test data table's models: the jobs are submitted with those files and run only on
    # a worker that has loaded the same ones
    default_worker="virnucpro worker --burst --models $TOOL_DIR/test-data/demo_models"
    read -r -a worker_cmd <<< "${VIRNUCPRO_QUEUE_WORKER:-$default_worker}"
    (
        export PATH="$VENV/bin:$PATH" VIRNUCPRO_REDIS_URL="$QUEUE_REDIS_URL" \
            VIRNUCPRO_DATABASE_URL="$QUEUE_DATABASE_URL" VIRNUCPRO_CACHE="$RUN/tmp/virnucpro-cache"
        while kill -0 "$SERVER_PID" 2> /dev/null; do
            "${worker_cmd[@]}" &
            echo $! > "$RUN/worker.pid"
            wait $! || echo "worker exited $?"
            sleep 1
        done
    ) > "$RUN/worker.log" 2>&1 &
    WORKER_PID=$!
    log "queue worker loop (pid $WORKER_PID): ${worker_cmd[*]}; log $RUN/worker.log"
fi

# --- every <test> of the tool, data-table tests included --------------------------------------
log "running the tool's tests"
set +e
timeout "$TEST_TIMEOUT_S" "$GALAXY_VENV/bin/galaxy-tool-test" \
    -u "$URL" -k "$USER_KEY" -a "$USER_KEY" -t "$TOOL_ID" \
    --with-reference-data --history-per-test-case --parallel-tests 2 \
    --test-data "$TOOL_DIR/test-data" \
    -o "$RUN/outputs" -j "$RUN/report.json" > "$RUN/galaxy-tool-test.log" 2>&1
tests_status=$?
set -e
if [ "$tests_status" -ne 0 ]; then
    echo "galaxy-tool-test exited $tests_status; its last lines:"
    tail -n 30 "$RUN/galaxy-tool-test.log"
fi
tests_ok=0
helper summarize "$RUN/report.json" "$TOOL_XML" || tests_ok=1

# --- the linter: no error, no warning ---------------------------------------------------------
lint_ok=0
helper lint "$TOOL_XML" || lint_ok=1

verdict() { if [ "$1" -eq 0 ]; then echo ok; else echo FAILED; fi; }
if [ "$tests_ok" -ne 0 ] || [ "$tests_status" -ne 0 ] || [ "$lint_ok" -ne 0 ] \
    || [ "$command_ok" -ne 0 ]; then
    echo "galaxy: FAILED (tool tests: $(verdict $((tests_ok + tests_status)))," \
        "lint: $(verdict "$lint_ok"), command checks: $(verdict "$command_ok"))"
    exit 1
fi
log "Galaxy tool tests, command checks and lint passed"
