"""Only the C extension lives here; everything else is in pyproject.toml."""

import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Build the C kernels when a compiler works; otherwise install the pure-Python package."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers: the NumPy reference still runs
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc)

    @staticmethod
    def _warn(exc):
        print(f"WARNING: pyrnn's C extension was not built ({exc}); pyrnn will run on the "
              "NumPy reference.", file=sys.stderr)


setup(cffi_modules=["csrc/ffi_build.py:ffibuilder"], cmdclass={"build_ext": OptionalBuildExt})
