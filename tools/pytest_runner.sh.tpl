#!/usr/bin/env bash
# Test wrapper used by every //:py_test_* target.
# Generated from //tools:pytest_runner.sh.tpl; @@PYTHON@@ is the interpreter
# from @python (the one selected by $SHADOWPROF_PYTHON).
# Usage (from the sh_test's args): pytest_runner tests/test_X.py [pytest args]
set -euo pipefail

PYTHON='@@PYTHON@@'
WORKSPACE_NAME='@@WORKSPACE@@'

ROOT="${TEST_SRCDIR:?not running under bazel test}/$WORKSPACE_NAME"
cd "$ROOT"

export PYTHONPATH="$ROOT/shadowprof_pkg${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

args=(-q -p no:cacheprovider)
if [[ -n "${XML_OUTPUT_FILE:-}" ]]; then
  # Per-test-case results for Bazel's test.xml (counted by .ci/run).
  args+=("--junitxml=$XML_OUTPUT_FILE")
fi

# The interpreter under test heads every test log.
"$PYTHON" -c 'import sys; print("shadowprof tests on Python %s (%s)" % (sys.version.split()[0], sys.executable))'
exec "$PYTHON" -m pytest "${args[@]}" "$@"
