#!/usr/bin/env bash
# Quick start, part 1: build shadowprof into a private venv and profile a demo workload.
# Works on a fresh machine as root; installs what it needs (gcc, Python headers) first.
# Usage: bash tools/demo.sh [extra shadowprof options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${SHADOWPROF_PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x /root/.pyenv/versions/3.11.7/bin/python3 ]]; then PY=/root/.pyenv/versions/3.11.7/bin/python3
  else PY=python3; fi
fi
if ! command -v gcc >/dev/null 2>&1 || ! "$PY" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  echo "==> installing gcc and Python headers" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential python3-dev >&2
fi
VENV="${SHADOWPROF_DEMO_VENV:-$HOME/.cache/shadowprof-demo/venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "==> creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
echo "==> pip install $ROOT" >&2
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$ROOT" >&2
echo "==> python -m shadowprof -i 1ms tools/demo.py" >&2
cd "$ROOT"
exec "$VENV/bin/python" -m shadowprof -i 1ms "$@" tools/demo.py
