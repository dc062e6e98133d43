"""Builds the shadowprof._core extension; metadata lives in pyproject.toml.

The package `shadowprof` comes from analysis/ (see [tool.setuptools] in
pyproject.toml); the extension is every profiler/*.c.
"""
import glob
import os

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _rel(pattern):
    return sorted(
        os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern))
    )


core = Extension(
    "shadowprof._core",
    sources=_rel("profiler/*.c"),
    depends=_rel("profiler/*.h"),
    include_dirs=["profiler"],
    extra_compile_args=[
        "-O2",
        "-g",
        "-fvisibility=hidden",
        "-fno-omit-frame-pointer",
        "-Wall",
    ],
    libraries=["pthread"],
)

setup(ext_modules=[core])
