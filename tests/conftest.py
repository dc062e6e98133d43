"""Shared helpers for shadowprof's tests."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


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
