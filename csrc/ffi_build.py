"""cffi out-of-line API-mode build of ``pyrnn._pyrnn_c`` from the C sources in this folder.

The cdef is the section of pyrnn.h between PYRNN_CDEF_BEGIN and PYRNN_CDEF_END, verbatim.
"""

import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["status.c", "workspace.c"]


def read_cdef(header_path: str) -> str:
    text = open(header_path, encoding="utf-8").read()
    begin = text.index("/* PYRNN_CDEF_BEGIN */") + len("/* PYRNN_CDEF_BEGIN */")
    return text[begin : text.index("/* PYRNN_CDEF_END */")]


ffibuilder = FFI()
ffibuilder.cdef(read_cdef(os.path.join(HERE, "pyrnn.h")))
ffibuilder.set_source(
    "pyrnn._pyrnn_c",
    '#include "pyrnn.h"',
    sources=[os.path.relpath(os.path.join(HERE, s)) for s in SOURCES],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O3", "-std=c11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
