#!/usr/bin/env bash
# Quick developer build without Bazel: compiles the extension and copies the package
# into DEST (default /tmp/shadowprof-dev), for PYTHONPATH=DEST.
# Usage: tools/devbuild.sh [DEST] [PYTHON]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-/tmp/shadowprof-dev}"
PY="${2:-${SHADOWPROF_PYTHON:-python3}}"
INC=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
SUF=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
mkdir -p "$DEST/shadowprof/analysis"
cp "$ROOT"/profiler/*.py "$DEST/shadowprof/"
cp "$ROOT"/analysis/*.py "$DEST/shadowprof/analysis/"
gcc -O2 -g -fPIC -shared -fvisibility=hidden -fno-omit-frame-pointer -Wall \
    ${EXTRA_CFLAGS:-} -I"$INC" "$ROOT"/profiler/*.c -o "$DEST/shadowprof/_core$SUF" \
    -lpthread -ldl -lz
# shadowprof.analysis._pprof: the pprof encoder for Profile models (pprof_enc.c and
# deflate.c alone)
gcc -O2 -g -fPIC -shared -fvisibility=hidden -fno-omit-frame-pointer -Wall \
    ${EXTRA_CFLAGS:-} -I"$INC" -I"$ROOT/profiler" "$ROOT"/analysis/_pprof.c \
    "$ROOT"/profiler/pprof_enc.c "$ROOT"/profiler/deflate.c -o "$DEST/shadowprof/analysis/_pprof$SUF" \
    -lpthread -ldl -lz
echo "$DEST"
