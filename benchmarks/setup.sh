#!/usr/bin/env bash
# Create the benchmark venv with shadowprof's peer profilers and pyperformance's
# benchmark programs. Idempotent: re-running upgrades nothing already present.
#
#   BENCH_VENV        venv path (default /tmp/shadowprof-bench-venv)
#   SHADOWPROF_PYTHON interpreter to build the venv from
#                     (default /root/.pyenv/versions/3.11.7/bin/python3)
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VENV="${BENCH_VENV:-/tmp/shadowprof-bench-venv}"
PY="${SHADOWPROF_PYTHON:-/root/.pyenv/versions/3.11.7/bin/python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating venv $VENV from $PY"
    "$PY" -m venv "$VENV" || { echo "venv creation failed" >&2; exit 1; }
fi
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip setuptools wheel

# Peers + pyperformance (benchmark programs) + pyperf (imported by bm_* modules).
PEERS="py-spy pyinstrument yappi scalene austin-dist pyperformance pyperf"
echo "== installing peers: $PEERS"
if ! "$VPY" -m pip install -q $PEERS; then
    echo "bulk install failed; trying peers one by one" >&2
    for p in $PEERS; do
        "$VPY" -m pip install -q "$p" || echo "WARNING: could not install $p" >&2
    done
fi

# austin-dist >= 4 ships a binary linked against glibc 2.38; Debian 12 has
# 2.36 ("GLIBC_2.38 not found").  Fall back to the last 3.x if it cannot run.
if ! "$VENV/bin/austin" --version >/dev/null 2>&1; then
    echo "austin from austin-dist $("$VPY" -m pip show austin-dist 2>/dev/null | sed -n 's/^Version: //p')" \
         "does not run here:" >&2
    "$VENV/bin/austin" --version 2>&1 | head -2 >&2
    echo "== falling back to austin-dist 3.7.0" >&2
    "$VPY" -m pip install -q "austin-dist==3.7.0" || echo "WARNING: austin-dist 3.7.0 install failed" >&2
fi

echo "== installing shadowprof from $REPO"
if "$VPY" -m pip install -q --force-reinstall --no-deps "$REPO"; then
    echo "shadowprof installed"
else
    echo "WARNING: shadowprof could not be installed from $REPO (not buildable yet?);" \
         "continuing without it - its configurations will be recorded as failed." >&2
fi

echo "== installed versions"
"$VPY" - <<'PYEOF'
import importlib.metadata as md
for d in ["shadowprof", "py-spy", "pyinstrument", "yappi", "scalene", "austin-dist",
          "pyperformance", "pyperf"]:
    try:
        print(f"  {d:14s} {md.version(d)}")
    except md.PackageNotFoundError:
        print(f"  {d:14s} (not installed)")
PYEOF
echo "venv ready: $VENV  (run: $VPY $HERE/run.py)"
exit 0
