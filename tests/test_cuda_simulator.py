"""Runs tests/cuda_sim_cases.py in Numba's CUDA simulator, in a pytest process of its own.

NUMBA_ENABLE_CUDASIM is read when numba is first imported and changes what ``numba.cuda`` is for
the whole process, so the simulator tests never share a process with the rest of the suite.
"""

import os
import pathlib
import re
import subprocess
import sys

CASES = pathlib.Path(__file__).with_name("cuda_sim_cases.py")


def test_cuda_backend_matches_reference_in_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    for name in ("PYRNN_CUDA_PERSISTENT", "PYRNN_BACKEND"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)],
        cwd=CASES.parent.parent, env=env, capture_output=True, text=True, timeout=900)
    report = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    summary = proc.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 50, report
    assert not re.search(r"skipped|xfail|deselected|error", summary), report
