"""The benchmark scripts behind benchmarks/RESULTS.md still build and run: kernel_parts.c compiles
against the kernels it times, time_kernel.py times a call, idle_calls.py times calls made now and
then, and test_kernels.py renders several runs side by side. (The timings themselves are never
asserted.)"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CC = os.environ.get("CC", "gcc")


@pytest.mark.skipif(shutil.which(CC) is None, reason="no C compiler")
@pytest.mark.parametrize("isa_flags", [[], ["-DKP_AVX2"]], ids=["avx512", "avx2"])
def test_kernel_parts_compiles_against_the_kernels(tmp_path, isa_flags):
    # -fopenmp where the compiler has it, as the package build does; syntax and types only
    omp = subprocess.run([CC, "-fopenmp", "-x", "c", "-", "-o", str(tmp_path / "probe")],
                         input="int main(void){return 0;}", text=True, capture_output=True)
    flags = ["-fopenmp"] if omp.returncode == 0 else []
    result = subprocess.run(
        [CC, "-std=c11", "-ffp-contract=fast", "-Wall", "-Werror", "-fsyntax-only", *flags,
         *isa_flags, "-Icsrc", "benchmarks/kernel_parts.c"],
        cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_time_kernel_times_one_pass():
    pytest.importorskip("pyrnn._c", reason="the C extension is not built")
    result = subprocess.run(
        [sys.executable, "benchmarks/time_kernel.py", "gru", "3", "2", "4", "5", "2", "--only",
         "fwd"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "gru T=3 B=2 I=4 H=5" in result.stdout
    assert "fwd min" in result.stdout
    assert "fwd+bwd" not in result.stdout and "infer" not in result.stdout


def test_time_kernel_idles_before_each_timed_call(monkeypatch, capsys):
    pytest.importorskip("pyrnn._c", reason="the C extension is not built")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import time_kernel
    slept = []
    monkeypatch.setattr(time_kernel.time, "sleep", slept.append)
    monkeypatch.setattr(sys, "argv", ["time_kernel.py", "rnn", "3", "2", "4", "5", "3",
                                      "--only", "infer", "--idle", "20"])
    time_kernel.main()
    assert slept == [0.02] * 3  # one per timed call, none before the warm-up
    assert "infer min" in capsys.readouterr().out


def test_idle_calls_times_both_modules_each_round():
    pytest.importorskip("torch")
    result = subprocess.run(
        [sys.executable, "benchmarks/idle_calls.py", "gru", "3", "2", "4", "5", "--idle", "0.5",
         "--calls", "2", "--rounds", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all("idle 0.5 ms: torch.nn" in line and "pyrnn.torch" in line
                                   and line.endswith("x") for line in lines), result.stdout


def test_idle_calls_rejects_a_negative_idle():
    pytest.importorskip("torch")
    result = subprocess.run([sys.executable, "benchmarks/idle_calls.py", "rnn", "1", "1", "1", "1",
                             "--idle", "-1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--idle: expected milliseconds >= 0" in result.stderr


def test_kernel_tables_put_runs_side_by_side(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    pytest.importorskip("pyrnn._c", reason="the C extension is not built")
    import test_kernels

    def run(c_ms, torch_ms):
        info = dict(kind="grid", cell="rnn", shape=[2, 1, 3, 4], dtype="float32", train=False,
                    flops=1e6)
        return {"benchmarks": [
            {"extra_info": {**info, "impl": impl}, "stats": {"median": ms / 1e3}}
            for impl, ms in (("c", c_ms), ("torch", torch_ms))]}

    paths = []
    for k, times in enumerate([(1.0, 2.0), (2.0, 3.0)]):
        paths.append(tmp_path / f"run{k}.json")
        paths[-1].write_text(json.dumps(run(*times)))
    row = [line for line in test_kernels.table(*map(str, paths)).splitlines()
           if line.startswith("| rnn")]
    assert row == ["| rnn | 2 | 1 | 3 | 4 | fwd | 1.000 / 2.000 | 2.000 / 3.000 |  | "
                   "1.0 / 0.5 | 0% / 0% | 2.00x / 1.50x |  |"]
