"""Shared helpers for shadowprof's tests."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
PROGRAM = os.path.join(DATA, "cc_program.py")   # the deterministic call-count program
DRIVER = os.path.join(DATA, "cc_driver.py")


def code_name(code):
    """The name shadowprof reports for *code*: its qualified name where code objects
    carry one (co_qualname, CPython 3.11+), else its plain name (3.9, 3.10: the hook
    sees only the code object, and co_name is all it has)."""
    return getattr(code, "co_qualname", code.co_name)


def run_driver(mode, program=PROGRAM):
    """Run *program* under cProfile, shadowprof or both (tests/data/cc_driver.py) in a
    fresh interpreter and return the counts it prints as JSON."""
    proc = subprocess.run([sys.executable, DRIVER, mode, program],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run_shadowprof(*args, cwd=None, env=None, timeout=120, input=None):
    """Run ``python -m shadowprof ARGS`` and return the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "shadowprof", *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True,
                          timeout=timeout, input=input)


@pytest.fixture
def write_script(tmp_path):
    """Write a script into a temporary directory and return its path."""
    def write(text, name="prog.py"):
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return write
