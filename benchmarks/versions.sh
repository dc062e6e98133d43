#!/usr/bin/env bash
# Overhead per CPython version: unprofiled vs shadowprof at 100 Hz vs cProfile, the
# same workloads on each of 3.9 ... 3.13 (pyenv's interpreters), interleaved runs.
#
#   benchmarks/versions.sh                 # all five versions, 5 repetitions
#   REPS=3 VERSIONS="3.12 3.13" benchmarks/versions.sh
#
# Per version: a venv /tmp/shadowprof-bench-X.Y with pyperf and pyperformance (the
# benchmark programs) from PyPI, shadowprof built from this tree with
# tools/devbuild.sh into /tmp/shadowprof-bench-X.Y-pkg (on PYTHONPATH), then run.py
# writes benchmarks/results/version-X.Y.json.  versions_table.py prints the table.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
REPS="${REPS:-5}"
VERSIONS="${VERSIONS:-3.9 3.10 3.11 3.12 3.13}"
WORKLOADS="${WORKLOADS:-richards,nbody,deltablue,raytrace,chaos,float,go,hexiom,recursion,generators,strings_dicts}"
for v in $VERSIONS; do
  base=""
  for d in /root/.pyenv/versions/"$v".*; do
    [[ -x "$d/bin/python$v" ]] && base="$d/bin/python$v"
  done
  if [[ -z "$base" ]]; then echo "no pyenv Python $v" >&2; continue; fi
  venv="/tmp/shadowprof-bench-$v"
  if ! "$venv/bin/python" -c "import pyperformance, pyperf" 2>/dev/null; then
    "$base" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check pyperf pyperformance
  fi
  pkg="/tmp/shadowprof-bench-$v-pkg"
  rm -rf "$pkg"
  "$REPO/tools/devbuild.sh" "$pkg" "$venv/bin/python" >/dev/null
  # Byte-compile it, as pip install does: the machine sets PYTHONDONTWRITEBYTECODE, and
  # compiling shadowprof's modules on every run would be counted as its overhead.
  "$venv/bin/python" -m compileall -q "$pkg" >/dev/null
  echo "== Python $v ($("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])'))" >&2
  PYTHONPATH="$pkg" "$venv/bin/python" "$HERE/run.py" --python "$venv/bin/python" \
    --configs none,shadowprof-100hz,cprofile --workloads "$WORKLOADS" --reps "$REPS" \
    --out "$HERE/results/version-$v.json" --md "/tmp/shadowprof-bench-$v.md"
done
python3 "$HERE/versions_table.py" "$HERE"/results/version-*.json
