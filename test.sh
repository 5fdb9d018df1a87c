#!/usr/bin/env bash
# The whole check, as CI runs it: lint, format, types, then the test suite. Usage: ./test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")"
.venv/bin/ruff check .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
