#!/usr/bin/env bash
# Runs the whole test suite twice: on the embedded PostgreSQL (the default path) and on the
# PostgreSQL server named by SOCLE_TEST_SERVER_URL (default: the local server at 127.0.0.1:5432).
# The server pass is skipped, loudly, only when no server answers there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

server_url=${SOCLE_TEST_SERVER_URL:-postgresql://postgres@127.0.0.1:5432/test}

echo "== lint and types =="
.venv/bin/ruff check socle tests bench docs/examples
.venv/bin/ruff format --check socle tests bench docs/examples
.venv/bin/mypy socle

echo "== tests on the embedded PostgreSQL =="
env -u DATABASE_URL .venv/bin/python -m pytest "$@"

if .venv/bin/python -c "import psycopg,sys; psycopg.connect(sys.argv[1], connect_timeout=3).close()" "$server_url" 2>/dev/null; then
  echo "== tests on the PostgreSQL server ($server_url) =="
  DATABASE_URL="$server_url" .venv/bin/python -m pytest "$@"
else
  echo "== no PostgreSQL server at $server_url: server pass skipped =="
fi
