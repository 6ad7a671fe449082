"""The benchmark scripts behind benchmarks/RESULTS.md still build and run: kernel_parts.c compiles
against the kernels it times, time_kernel.py times a call, compare_builds.py times builds against
each other, compare_packages.py times a revision's Python against the tree's, idle_calls.py
times calls made now and then, torch_cells.py times one step of each cell, and test_kernels.py
renders several runs side by side. (The timings themselves are never asserted.)"""

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


@pytest.mark.parametrize("script", ["time_kernel.py", "compare_builds.py", "idle_calls.py"])
def test_scripts_taking_a_shape_print_their_usage(script):
    # argparse (3.11) failed on --help for one positional of four values with a tuple metavar
    result = subprocess.run([sys.executable, f"benchmarks/{script}", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    if script == "idle_calls.py" and "No module named 'torch'" in result.stderr:
        pytest.skip("idle_calls.py imports torch")
    assert result.returncode == 0, result.stderr
    assert "{rnn,lstm,gru} T B I H" in result.stdout


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


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_compare_builds_times_each_build(tmp_path, cell):
    ext = pytest.importorskip("pyrnn._pyrnn_c", reason="the C extension is not built")
    libs = [tmp_path / f"build{k}.so" for k in range(2)]  # two files: loaded as two libraries
    for lib in libs:
        shutil.copy(ext.__file__, lib)
    result = subprocess.run(
        [sys.executable, "benchmarks/compare_builds.py", cell, "3", "2", "4", "5", "fwd+bwd",
         *map(str, libs), "--seconds", "0.2", "--dtype", "float64"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{cell} T=3 B=2 I=4 H=5 fwd+bwd float64" in result.stdout
    assert f"{libs[0]} " in result.stdout and "ms (1.000)" in result.stdout
    assert f"{libs[1]} " in result.stdout


@pytest.mark.parametrize("cell, flag", [("rnn", 0), ("rnn", 1), ("lstm", None), ("gru", 1),
                                        ("gru", 0)])
def test_compare_builds_calls_the_kernels_as_the_reference_computes(monkeypatch, cell, flag):
    # its ctypes argument lists are written by hand: each must give the reference's results
    ext = pytest.importorskip("pyrnn._pyrnn_c", reason="the C extension is not built")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import compare_builds
    import numpy as np

    from pyrnn import ref

    T, B, I, H = shape = (4, 3, 5, 6)
    G = compare_builds.GATES[cell]
    rng = np.random.default_rng(1)
    inputs = {"x": rng.uniform(-1, 1, (T, B, I)), "dy": rng.uniform(-1, 1, (T, B, H)),
              "weights": [rng.uniform(-0.5, 0.5, s) for s in [(G * H, I), (G * H, H), (G * H,),
                                                             (G * H,)]]}
    build = compare_builds.Build(ext.__file__, cell, shape, np.float64, "fwd+bwd", inputs, flag)
    build()
    flags = {"rnn": {"relu": bool(flag)}, "lstm": {}, "gru": {"reset_after": bool(flag)}}[cell]
    n_states = 2 if cell == "lstm" else 1
    variant = [bool(flag)] if cell == "gru" else []  # only the GRU's workspace depends on it
    ws = np.empty(getattr(ref, f"{cell}_workspace_len")(T, B, I, H, True, *variant))
    x, dy, w = inputs["x"], inputs["dy"], inputs["weights"]
    want = list(getattr(ref, f"{cell}_forward")(x, *[None] * n_states, *w, None, ws,
                                                training=True, **flags))
    want += getattr(ref, f"{cell}_backward")(x, *[None] * n_states, *w, None, dy,
                                             *[None] * n_states, ws, **flags)
    got = build.outputs()
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert np.linalg.norm(a - b) <= 1e-10 * np.linalg.norm(b)


def test_compare_builds_refuses_builds_whose_results_differ(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import compare_builds
    import numpy as np

    class Fake:
        def __init__(self, path, value):
            self.path, self.value = path, value

        def __call__(self):
            pass

        def outputs(self):
            return [np.full(4, self.value)]

    compare_builds.check_agreement([Fake("a", 1.0), Fake("b", 1.0 + 1e-9)], 1e-6)  # agree
    with pytest.raises(SystemExit, match="b: outputs differ from a's"):
        compare_builds.check_agreement([Fake("a", 1.0), Fake("b", 1.1)], 1e-6)


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


def test_torch_cells_times_both_passes_of_each_cell():
    pytest.importorskip("torch")
    result = subprocess.run(
        [sys.executable, "benchmarks/torch_cells.py", "--shapes", "2:3,1:5", "--rounds", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| ")
            and "Cell |" in line]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (f"| {cell}", b, h, p) for cell in ("LSTMCell", "GRUCell") for b, h in (("2", "3"),
                                                                            ("1", "5"))
        for p in ("no_grad", "fwd+bwd")]
    assert all(r[-1].endswith("x |") for r in rows)


def test_torch_cells_rejects_malformed_shapes():
    pytest.importorskip("torch")
    result = subprocess.run([sys.executable, "benchmarks/torch_cells.py", "--shapes", "2x3"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "expected B:H pairs" in result.stderr


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


def test_compare_packages_times_a_revision_against_the_tree():
    pytest.importorskip("pyrnn._c", reason="the C extension is not built")
    pytest.importorskip("torch")
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("not a git checkout: no revision to compare against")
    result = subprocess.run(
        [sys.executable, "benchmarks/compare_packages.py", "HEAD", "--quick", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "new/old" in line]
    names = [row.split(":")[0] for row in rows]
    assert names == ["pyrnn.torch LSTMCell B=1 H=8 no_grad", "pyrnn.torch LSTMCell B=1 H=8 fwd+bwd",
                     "pyrnn.LSTMCell B=1 H=8 call", "pyrnn.LSTMCell B=1 H=8 fwd+bwd",
                     "pyrnn.torch LSTM 3x1x2x4 no_grad", "pyrnn.torch LSTM 3x1x2x4 fwd+bwd",
                     "pyrnn.LSTM 3x1x2x4 call", "pyrnn.LSTM 3x1x2x4 fwd+bwd"] + (
        # compiled layers only where HEAD's operators are another revision than the tree's
        [] if "torch-compiled: skipped, both packages' operators are revision" in result.stdout
        else ["pyrnn.torch LSTM 3x1x2x4 compiled fwd+bwd"])
    bad = subprocess.run(
        [sys.executable, "benchmarks/compare_packages.py", "HEAD", "--groups", "cells"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown groups ['cells']" in bad.stderr


def test_torch_compile_times_four_contenders_of_each_model():
    pytest.importorskip("torch")
    result = subprocess.run(
        [sys.executable, "benchmarks/torch_compile.py", "--quick", "--compiler", "aot_eager"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line.split(" | ") for line in result.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| model")]
    assert [(r[0], r[5]) for r in rows] == [
        (f"| {kind}", p) for kind in ("LSTM", "GRU", "LSTMCell", "GRUCell")
        for p in ("no_grad", "fwd+bwd")]
    assert all(float(t) > 0 for r in rows for t in r[6:10]) and all(r[-1].endswith("x |")
                                                                   for r in rows)


def test_torch_second_derivatives_times_both_steps_of_each_model():
    pytest.importorskip("torch")
    result = subprocess.run(
        [sys.executable, "benchmarks/torch_second_derivatives.py", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line.split(" | ") for line in result.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| model")]
    assert [(r[0], r[5]) for r in rows] == [(f"| {m}", s) for m in ("LSTM", "GRU")
                                            for s in ("penalty", "plain")]
    assert all(float(t) > 0 for r in rows for t in r[6:8]) and all(r[-1].endswith("x |")
                                                                  for r in rows)
    bad = subprocess.run([sys.executable, "benchmarks/torch_second_derivatives.py", "--shapes",
                          "3x2x4"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "expected TxBxIxH" in bad.stderr
