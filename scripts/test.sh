#!/usr/bin/env bash
# Runs the whole test suite twice: on the embedded PostgreSQL (the default path) and on the
# PostgreSQL server named by SOCLE_TEST_SERVER_URL (default: the local server at 127.0.0.1:5432).
# The server pass is skipped, loudly, only when no server answers there.
#
# The two passes share nothing (each its own database, data dirs and free ports). They run one
# after the other by default: side by side on two cores, each pass's servers, browsers and
# PostgreSQL fought for the CPU and the whole took longer (35 min against about 22).
# SOCLE_TEST_PASSES=parallel runs them side by side (a machine with cores to spare), each pass's
# output in its log under .test-logs/, printed whole when the pass ends.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# the suite starts hundreds of Python processes (servers, workers, CLI runs): with
# PYTHONDONTWRITEBYTECODE set (some images set it) each compiled Socle's modules again, about
# 0.25 s of CPU per start; the compiled files go to __pycache__ (ignored by git)
unset PYTHONDONTWRITEBYTECODE

server_url=${SOCLE_TEST_SERVER_URL:-postgresql://postgres@127.0.0.1:5432/test}
mode=${SOCLE_TEST_PASSES:-sequential}

echo "== lint and types =="
.venv/bin/ruff check socle tests bench docs/examples
.venv/bin/ruff format --check socle tests bench docs/examples
.venv/bin/mypy socle

pytest_args=(--durations=15 "$@")
# Each pass runs in two processes (pytest-xdist; a module's tests stay in one process, the
# browser tests all in one: tests/conftest.py): about 8 minutes a pass here against 11-12 in one.
# On the server pass the two processes' servers and workers peak at 82-86 of PostgreSQL's 100
# connections: on a server shared with other work, SOCLE_TEST_PROCESSES=1 ("too many clients
# already" otherwise). One process on a one-core machine.
cores=$(nproc 2>/dev/null || echo 1)
processes=${SOCLE_TEST_PROCESSES:-$(( cores >= 2 ? 2 : 1 ))}
if [ "$processes" -gt 1 ]; then
  pytest_args=(-n "$processes" "${pytest_args[@]}")
fi
server_up=false
if .venv/bin/python -c "import psycopg,sys; psycopg.connect(sys.argv[1], connect_timeout=3).close()" "$server_url" 2>/dev/null; then
  server_up=true
fi

mkdir -p .test-logs
# each pass also leaves a JUnit report of every test's time (.test-logs/*.xml): where the
# suite's minutes go, without another run
embedded_pass() {
  env -u DATABASE_URL .venv/bin/python -m pytest --junitxml=.test-logs/embedded.xml "${pytest_args[@]}"
}
server_pass() {
  # the cache plugin is off here: the embedded pass keeps .pytest_cache
  DATABASE_URL="$server_url" .venv/bin/python -m pytest -p no:cacheprovider --junitxml=.test-logs/server.xml "${pytest_args[@]}"
}

show() {  # name, log, status
  echo "== tests on $1: $( [ "$3" -eq 0 ] && echo passed || echo "FAILED ($3)") =="
  cat "$2"
}

if [ "$server_up" = true ] && [ "$mode" = parallel ]; then
  echo "== tests on the embedded PostgreSQL and on the PostgreSQL server ($server_url), side by side =="
  embedded_pass >.test-logs/embedded.log 2>&1 &
  embedded_pid=$!
  server_pass >.test-logs/server.log 2>&1 &
  server_pid=$!
  embedded_rc=0; server_rc=0
  wait "$embedded_pid" || embedded_rc=$?
  show "the embedded PostgreSQL" .test-logs/embedded.log "$embedded_rc"
  wait "$server_pid" || server_rc=$?
  show "the PostgreSQL server ($server_url)" .test-logs/server.log "$server_rc"
  [ "$embedded_rc" -eq 0 ] && [ "$server_rc" -eq 0 ]
else
  echo "== tests on the embedded PostgreSQL =="
  embedded_pass
  if [ "$server_up" = true ]; then
    echo "== tests on the PostgreSQL server ($server_url) =="
    server_pass
  else
    echo "== no PostgreSQL server at $server_url: server pass skipped =="
  fi
fi
