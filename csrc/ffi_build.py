"""cffi out-of-line API-mode build of ``pyrnn._pyrnn_c`` from the C sources in this folder.

The cdef is the section of pyrnn.h between PYRNN_CDEF_BEGIN and PYRNN_CDEF_END, verbatim. The
build uses no -march flag: the instruction-set variants of the kernels are compiled with target
pragmas (isa_avx512.c, isa_avx2.c, isa_generic.c) and chosen at run time. OpenMP is used when the
compiler accepts -fopenmp (set PYRNN_NO_OPENMP=1 to build without it).
"""

import glob
import os
import tempfile

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = [
    "status.c", "workspace.c", "validate.c", "cpu.c", "threads.c", "rnn.c", "lstm.c", "gru.c",
    "isa_generic.c", "isa_avx2.c", "isa_avx512.c",
]
# -ffp-contract=fast: ISO C mode would otherwise forbid fusing a*b+c into one FMA
CFLAGS = ["-O3", "-std=c11", "-ffp-contract=fast"]


def read_cdef(header_path: str) -> str:
    text = open(header_path, encoding="utf-8").read()
    begin = text.index("/* PYRNN_CDEF_BEGIN */") + len("/* PYRNN_CDEF_BEGIN */")
    return text[begin : text.index("/* PYRNN_CDEF_END */")]


def openmp_flags() -> list[str]:
    """["-fopenmp"] when this compiler builds and links an OpenMP program, else []."""
    if os.environ.get("PYRNN_NO_OPENMP"):
        return []
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_probe.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        try:
            objects = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objects, os.path.join(tmp, "omp_probe"),
                                     extra_postargs=["-fopenmp"])
        except Exception:  # no OpenMP here: the kernels run on one thread
            return []
    return ["-fopenmp"]


OPENMP = openmp_flags()
ffibuilder = FFI()
ffibuilder.cdef(read_cdef(os.path.join(HERE, "pyrnn.h")))
ffibuilder.set_source(
    "pyrnn._pyrnn_c",
    '#include "pyrnn.h"',
    sources=[os.path.relpath(os.path.join(HERE, s)) for s in SOURCES],
    include_dirs=[os.path.relpath(HERE)],
    depends=sorted(os.path.relpath(h) for h in glob.glob(os.path.join(HERE, "*.h"))),
    extra_compile_args=CFLAGS + OPENMP,
    extra_link_args=OPENMP,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
