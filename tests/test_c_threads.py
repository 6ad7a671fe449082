"""The C kernels' thread team: a forked child still runs the kernels, and the sanitizer job
(AddressSanitizer and UndefinedBehaviorSanitizer on every instruction-set path) runs clean.
Bit-identity across thread counts and concurrent calls are in test_c_kernels.py."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import pyrnn

_c = pytest.importorskip("pyrnn._c", reason="the C extension is not built")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def two_threads():
    before = _c.lib.pyrnn_get_num_threads()
    pyrnn.set_num_threads(2)
    yield
    pyrnn.set_num_threads(before)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_runs_the_kernels(two_threads):
    # big enough that the time loop runs on two threads
    model = pyrnn.LSTM(40, 160, backend="c", seed=0)
    x = np.random.default_rng(0).standard_normal((6, 24, 40)).astype(np.float32)
    expected = model(x)[0]  # the parent's team now exists
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child runs on one thread: GNU OpenMP cannot start a team after a fork
        try:
            ok = np.array_equal(model(x)[0], expected)
            os.write(write, b"ok" if ok else b"mismatch")
        finally:
            os._exit(0)
    os.close(write)
    for _ in range(600):  # a child waiting for a worker it does not have would hang: 60 s
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung in the thread team")
    assert os.read(read, 16) == b"ok"
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "gcc")) is None,
                    reason="the sanitizer job needs the C compiler the extension was built with")
def test_sanitizer_job_runs_clean():
    out = subprocess.run(["bash", str(ROOT / ".ci" / "sanitize.sh")], capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "sanitize: clean" in out.stdout
    assert "0 failure(s)" in out.stdout
