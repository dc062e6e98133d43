#!/usr/bin/env bash
# Launcher for `bazel run //:shadowprof -- script.py args...`
# Generated from //tools:shadowprof_launcher.sh.tpl; @@PYTHON@@ is the
# interpreter from @python (the one selected by $SHADOWPROF_PYTHON).
set -euo pipefail

PYTHON='@@PYTHON@@'
WORKSPACE_NAME='@@WORKSPACE@@'

# Locate the runfiles tree (bazel run / bazel test / direct bazel-bin call).
if [[ -z "${RUNFILES_DIR:-}" ]]; then
  if [[ -n "${TEST_SRCDIR:-}" ]]; then
    RUNFILES_DIR="$TEST_SRCDIR"
  elif [[ -d "$0.runfiles" ]]; then
    RUNFILES_DIR="$0.runfiles"
  else
    self="$(readlink -f "$0")"
    RUNFILES_DIR="$self.runfiles"
  fi
fi
RUNFILES_DIR="$(cd "$RUNFILES_DIR" && pwd)"
PKG_DIR="$RUNFILES_DIR/$WORKSPACE_NAME/shadowprof_pkg"
if [[ ! -d "$PKG_DIR/shadowprof" ]]; then
  echo "shadowprof launcher: package not found in $PKG_DIR" >&2
  exit 2
fi

export PYTHONPATH="$PKG_DIR${PYTHONPATH:+:$PYTHONPATH}"

# Relative paths on the command line are relative to where the user ran bazel.
if [[ -n "${BUILD_WORKING_DIRECTORY:-}" ]]; then
  cd "$BUILD_WORKING_DIRECTORY"
fi

exec "$PYTHON" -m shadowprof "$@"
