#!/usr/bin/env bash
# Builds the hookcost extension for one interpreter into a directory.
# Usage: benchmarks/hookcost/build.sh DIR [PYTHON]   (PYTHON: the real binary, e.g.
#        /root/.pyenv/versions/3.11.7/bin/python3.11; default python3)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${1:?usage: build.sh DIR [PYTHON]}"
PY="${2:-python3}"
INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
EXT=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
mkdir -p "$DIR"
gcc -O2 -fPIC -shared -Wall -I"$INC" "$HERE/hookcost.c" -o "$DIR/hookcost$EXT"
echo "$DIR/hookcost$EXT"
