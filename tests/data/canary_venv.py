"""Test helper: a throwaway venv whose site-packages holds the built shadowprof package
and shadowprof.pth, so that `python -X shadowprof` and SHADOWPROF work as after
`pip install .` (.pth files are only read in site directories, not PYTHONPATH)."""

import os
import shutil
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PTH = os.path.join(ROOT, "shadowprof.pth")


def make_venv(where: str, system_site: bool = True) -> str:
    """Create the venv under *where*; return its python.  *system_site*: the base
    interpreter's site-packages (and their .pth files) are seen too."""
    import shadowprof
    pkg = os.path.dirname(os.path.abspath(shadowprof.__file__))
    venv = os.path.join(where, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip"]
                   + (["--system-site-packages"] if system_site else []) + [venv],
                   check=True, timeout=120)
    py = os.path.join(venv, "bin", "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True,
                          check=True).stdout.strip()
    shutil.copytree(pkg, os.path.join(site, "shadowprof"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PTH, site)
    return py


def clean_env(**extra) -> dict:
    """The environment for the venv's python: no PYTHONPATH (the package must come
    from site-packages), no inherited SHADOWPROF."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "SHADOWPROF", "PYTHONNOUSERSITE")}
    env.update(extra)
    return env


def run(py: str, *args, env=None, timeout=120, cwd=None):
    return subprocess.run([py, *args], capture_output=True, text=True,
                          env=clean_env(**(env or {})), timeout=timeout, cwd=cwd)
