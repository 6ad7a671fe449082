"""The C kernels' thread team: a forked child still runs the kernels, and the sanitizer job
(AddressSanitizer and UndefinedBehaviorSanitizer on every instruction-set path) runs clean.
Bit-identity across thread counts and concurrent calls are in test_c_kernels.py."""

import os
import shutil
import signal
import subprocess
import sys
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


def printed_by_a_fresh_process(code: str, setting) -> str:
    """What ``code`` prints in a new process with PYRNN_BARRIER_NS = setting (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "PYRNN_BARRIER_NS"}
    if setting is not None:
        env["PYRNN_BARRIER_NS"] = setting
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return out.stdout


def barrier_ns_in_a_fresh_process(setting):
    """What a new process's kernels take the barrier to cost after one call big enough for a
    team."""
    code = ("import numpy as np, pyrnn; from pyrnn import _c; pyrnn.set_num_threads(2); "
            "pyrnn.LSTM(40, 160, backend='c', seed=0)(np.ones((3, 24, 40), np.float32)); "
            "print(_c.info()['barrier_ns'])")
    return float(printed_by_a_fresh_process(code, setting).strip())


def test_the_barrier_cost_is_measured_or_taken_from_the_environment():
    assert barrier_ns_in_a_fresh_process("250") == 250
    for setting in (None, "0", "fast"):  # unset or not a count: measured
        ns = barrier_ns_in_a_fresh_process(setting)
        if _c.info()["thread_team"]:
            assert 1 <= ns <= 1e6
        else:
            assert ns == 60  # nothing to measure: the thresholds stand as they are


def measurements_in_a_fresh_process(setting):
    """How many barrier measurements a new process has taken at calls that ask for the cost
    (``_c.info()`` asks) after 0, 0.07, 0.12, 0.32 and 1.17 s."""
    code = ("import time, pyrnn; from pyrnn import _c; pyrnn.set_num_threads(2)\n"
            "taken = [_c.info()['barrier_measurements']]\n"
            "for pause in (0.07, 0.05, 0.2, 0.85):\n"
            "    time.sleep(pause)\n"
            "    taken.append(_c.info()['barrier_measurements'])\n"
            "print(*taken)")
    return [int(n) for n in printed_by_a_fresh_process(code, setting).split()]


def test_the_barrier_is_measured_again_ever_further_apart():
    # at once, then 50 ms, 0.2 s and 0.8 s after the one before (the host may have moved the
    # vCPUs in between): 0.05 s after the second is too soon for a third
    assert measurements_in_a_fresh_process(None) == [1, 2, 2, 3, 4]
    assert measurements_in_a_fresh_process("250") == [0, 0, 0, 0, 0]  # pinned: none
