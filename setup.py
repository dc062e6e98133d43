"""Builds the shadowprof._core extension; metadata lives in pyproject.toml.

The package `shadowprof` is the runtime in profiler/*.py with the extension built
from every profiler/*.c; its subpackage `shadowprof.analysis`, what reads profiles,
is analysis/ (see [tool.setuptools] in pyproject.toml), with the extension _pprof
(analysis/_pprof.c, profiler/pprof_enc.c and deflate.c: the pprof encoder).
"""
import glob
import os

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.build_ext import build_ext
except ImportError:  # pragma: no cover
    from distutils.command.build_ext import build_ext

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
    libraries=["pthread", "dl", "z"],   # dl: libunwind is dlopen'ed for --native;
                                        # z: gzip of pprof files (deflate.c; it
                                        # dlopens libisal, libdeflate if there)
)

# shadowprof.analysis._pprof: the same pprof encoder for Profile models read from
# files; analysis/ never loads _core, so it links pprof_enc.c and deflate.c alone.
pprof_ext = Extension(
    "shadowprof.analysis._pprof",
    sources=["analysis/_pprof.c", "profiler/pprof_enc.c", "profiler/deflate.c"],
    depends=["profiler/clock.h", "profiler/deflate.h", "profiler/pprof_enc.h", "profiler/pprof_text.h",
             "profiler/posindex.h"],
    include_dirs=["profiler"],
    extra_compile_args=core.extra_compile_args,
    libraries=["pthread", "dl", "z"],
)



class build_ext_gperf(build_ext):
    """Runs gperf on profiler/options.gperf into the build directory and compiles
    options.c against that output (SP_OPTIONS_KEYS_GEN); without gperf, the copy
    checked in as profiler/options_keys.h is used."""

    def run(self):
        import shutil
        import subprocess
        gperf = shutil.which("gperf")
        if gperf:
            out_dir = os.path.join(os.path.abspath(self.build_temp), "gperf")
            os.makedirs(out_dir, exist_ok=True)
            subprocess.run([gperf, "options.gperf",
                            "--output-file=" + os.path.join(out_dir, "options_keys_gen.h")],
                           cwd=os.path.join(HERE, "profiler"), check=True)
            for ext in self.extensions:
                ext.include_dirs.append(out_dir)
                ext.define_macros.append(("SP_OPTIONS_KEYS_GEN", "1"))
        super().run()


class build_py_pth(build_py):
    """Also installs shadowprof.pth at the root of site-packages: the startup hook of
    `python -X shadowprof` and SHADOWPROF (it imports nothing unless asked)."""

    def run(self):
        super().run()
        self.copy_file(os.path.join(HERE, "shadowprof.pth"),
                       os.path.join(self.build_lib, "shadowprof.pth"))

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [
            os.path.join(self.build_lib, "shadowprof.pth")]


setup(ext_modules=[core, pprof_ext],
      cmdclass={"build_ext": build_ext_gperf, "build_py": build_py_pth})
