"""Each instruction-set path of the C kernels, in its own process.

PYRNN_DISABLE_CPU_FEATURES is read once per process, so every path this machine can run (the
best one included) reruns tests/test_c_kernels.py in a subprocess with the lower paths forced.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

_c = pytest.importorskip("pyrnn._c", reason="the C extension is not built")

ROOT = Path(__file__).resolve().parents[1]
# instruction set -> the PYRNN_DISABLE_CPU_FEATURES that selects it on a machine that has it
DISABLE = {"avx512": "", "avx2": "avx512", "generic": "avx512,avx2"}
ORDER = ["generic", "avx2", "avx512"]
BEST = _c.info()["isa"]
PATHS = ORDER[: ORDER.index(BEST) + 1]


@pytest.mark.parametrize("isa", PATHS)
def test_instruction_set_path(isa):
    env = dict(os.environ, PYRNN_DISABLE_CPU_FEATURES=DISABLE[isa], PYRNN_EXPECT_ISA=isa)
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         "tests/test_c_kernels.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
