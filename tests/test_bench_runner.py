"""The benchmark runner on a tiny grid: its table, results.json, plots, progress and arguments."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pyrnn
from pyrnn.bench import cli, contenders, grids, plan, timing
from pyrnn.bench.__main__ import main
from pyrnn.bench.check import compare, rel_error
from pyrnn.bench.progress import Progress
from pyrnn.bench.timing import TimingPolicy, summarize, time_in_groups, time_interleaved

HAS_TORCH = contenders.torch_version() is not None
# the CPU backends here (the CUDA one would run Numba's slow simulator without a GPU)
BACKENDS = [b for b in pyrnn.available_backends() if b in ("numpy", "c")] + \
    (["torch"] if HAS_TORCH else [])
SHAPES = "4x3x3x5,3x1x2x2"
TINY = ["--quick", "--shapes", SHAPES, "--gemm-size", "64", "--threads", "1",
        "--backends", ",".join(BACKENDS)]
NUMBER_COLUMNS = ("ms/call", "seq/s", "GFLOP/s", "%gemm", "%fma", "x seq")


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One in-process run over every cell, both passes, with --out."""
    out_dir = tmp_path_factory.mktemp("bench")
    before = thread_counts()
    code, stdout, stderr = run_main(TINY + ["--out", str(out_dir)])
    assert thread_counts() == before  # --threads 1 applied to the run only
    return code, stdout, stderr, out_dir


def thread_counts() -> tuple:
    """Threads of pyrnn's C kernels and of PyTorch (None where absent)."""
    c_threads = pyrnn.backend_info().get("c", {}).get("threads")
    if not HAS_TORCH:
        return c_threads, None
    import torch

    return c_threads, torch.get_num_threads()


def table(stdout: str, title: str) -> list[dict]:
    """The rows of the table under ``== title`` as dicts keyed by header."""
    lines = stdout.splitlines()
    start = lines.index(f"== {title}") + 1
    headers = [h for h in lines[start].split("  ") if h.strip()]
    headers = [h.strip() for h in headers]
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        cells = line.split()
        # the first header ("shape TxBxIxH") is one cell wide in the rows
        rows.append(dict(zip(headers, cells)))
    return rows


def test_run_succeeds_and_reports_every_cell_and_pass(tiny_run):
    code, stdout, _, _ = tiny_run
    assert code == 0
    for cell in grids.CELLS:
        for pass_title in plan.PASSES.values():
            assert f"== {cell}: {pass_title}, batch sizes" in stdout
            assert f"== {cell}: {pass_title}, ragged lengths" in stdout
    assert "ceilings: measured numpy matmul 64^3 float32" in stdout
    assert "FMA peak" in stdout


def test_batch_table_has_a_row_per_backend_and_batch_size_with_numbers(tiny_run):
    stdout = tiny_run[1]
    rows = table(stdout, "lstm: forward (inference), batch sizes")
    expected = {(shape, backend, str(b)) for shape in SHAPES.split(",") for backend in BACKENDS
                for b in grids.batch_sizes(grids.parse_shape(shape).B, grids.SWEEPS["quick"])}
    assert {(r["shape TxBxIxH"], r["backend"], r["batch"]) for r in rows} == expected
    for r in rows:
        for column in NUMBER_COLUMNS:
            assert float(r[column]) >= 0, (column, r)
        assert r["spread"].endswith("%")
        if r["batch"] == "1":
            assert float(r["x seq"]) == 1.0
        if r["backend"] == "torch":
            assert r["x torch"] == "-"
        elif HAS_TORCH:
            assert float(r["x torch"]) > 0


def test_ragged_table_compares_padded_lengths_and_bucketed(tiny_run):
    rows = table(tiny_run[1], "gru: forward+backward (training), ragged lengths")
    for backend in BACKENDS:
        strategies = [r["strategy"] for r in rows
                      if r["backend"] == backend and r["shape TxBxIxH"] == "4x3x3x5"]
        assert strategies == ["padded", "lengths", "bucketed"]
        # the bucket count of "bucketed x3" splits into two cells; the padded row is the base
        padded = [r for r in rows if r["backend"] == backend and r["strategy"] == "padded"]
        assert all(float(r["x padded"]) == 1.0 for r in padded)
    # B = 1 has no buckets: padded and lengths only
    assert {r["strategy"] for r in rows if r["shape TxBxIxH"] == "3x1x2x2"} == {"padded",
                                                                              "lengths"}


def test_results_json_schema(tiny_run):
    out_dir = tiny_run[3]
    data = json.loads((out_dir / "results.json").read_text())
    assert data["schema"] == "pyrnn.bench/1"
    assert data["argv"][:1] == ["--quick"]
    assert data["settings"]["backends"] == BACKENDS
    assert data["settings"]["dtype"] == "float32" and data["settings"]["threads"] == 1
    assert set(data["versions"]) >= {"pyrnn", "python", "numpy", "torch", "backend_info"}
    assert data["versions"]["backend_info"]["available"] == pyrnn.available_backends()
    assert {"model", "usable_cpus", "vector_extensions", "threads"} <= set(data["machine"])
    assert data["ceilings"]["gemm"]["numpy"]["gflops"] > 0
    assert set(data["ceilings"]["fma_peak_estimate"]) == {"gflops", "formula"}
    assert data["ceilings"]["gemm"]["numpy"]["time_s"]["median"] > 0
    measurements = data["measurements"]
    # cells x passes x (batch sizes + lengths [+ bucketed]) x backends
    per_pass = (2 + 1 + 1) + (1 + 1)
    assert len(measurements) == 3 * 2 * per_pass * len(BACKENDS)
    for m in measurements:
        assert m["cell"] in grids.CELLS and m["pass"] in plan.PASSES
        assert m["backend"] in BACKENDS
        assert set(m["shape"]) == {"T", "B", "I", "H"}
        assert m["strategy"] in ("batched", "lengths", "bucketed")
        assert isinstance(m["batch"], int) and isinstance(m["flops_per_unit"], float)
        assert m["check"]["ok"] is True and m["check"]["max_rel_err"] <= 1e-4
        assert m["error"] is None
        t = m["time_s"]
        assert 0 < t["min"] <= t["q1"] <= t["median"] <= t["q3"] <= t["max"]
        assert t["rel_spread"] >= 0 and t["samples"] >= 3 and t["units_per_sample"] >= 1
        assert m["seq_per_s"] == pytest.approx(m["sequences_per_unit"] / t["median"])
        assert m["gflops"] == pytest.approx(m["flops_per_unit"] / t["median"] / 1e9)
    lengths = {(r["cell"], r["shape"]["T"]): r["lengths"] for r in data["ragged_lengths"]}
    assert all(1 <= v <= T for (_, T), ls in lengths.items() for v in ls)


def test_plots_are_pngs(tiny_run):
    pytest.importorskip("matplotlib")
    stdout, out_dir = tiny_run[1], tiny_run[3]
    names = ["throughput_vs_batch_fwd.png", "throughput_vs_batch_train.png"]
    if HAS_TORCH:
        names += ["vs_torch_fwd.png", "vs_torch_train.png"]
    for name in names:
        assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {out_dir / name}" in stdout


def test_without_matplotlib_writes_json_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    argv = ["--quick", "--shapes", "2x2x2x2", "--cells", "rnn", "--passes", "fwd",
            "--backends", "numpy", "--gemm-size", "32", "--out", str(tmp_path)]
    code, stdout, _ = run_main(argv)
    assert code == 0
    assert "no plots: matplotlib is not installed" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch as the contender to break")
def test_a_result_that_disagrees_with_the_reference_fails_loudly(tmp_path, monkeypatch):
    prepare = contenders.TorchContender.prepare

    def wrong_prepare(self, calls, train):
        run, result = prepare(self, calls, train)
        return run, lambda k: {**result(k), "h_n": result(k)["h_n"] + 1}

    monkeypatch.setattr(contenders.TorchContender, "prepare", wrong_prepare)
    argv = ["--quick", "--shapes", "2x2x2x2", "--cells", "gru", "--passes", "fwd",
            "--backends", "numpy,torch", "--gemm-size", "32", "--out", str(tmp_path)]
    code, stdout, stderr = run_main(argv)
    assert code == 1
    assert "check failed: h_n differs from the NumPy reference" in stdout
    assert "FAILED the check" in stdout
    assert "torch gru 2x2x2x2 fwd b=1: check failed" in stderr
    data = json.loads((tmp_path / "results.json").read_text())
    failed = [m for m in data["measurements"] if m["backend"] == "torch"]
    assert failed and all(not m["check"]["ok"] and m["time_s"] is None for m in failed)
    assert all(m["check"]["ok"] for m in data["measurements"] if m["backend"] == "numpy")


def test_module_run_keeps_progress_off_piped_stdout():
    argv = [sys.executable, "-m", "pyrnn.bench", "--quick", "--shapes", "3x2x2x3",
            "--cells", "lstm", "--backends", "numpy", "--gemm-size", "32"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout and "[#" not in done.stdout and "[." not in done.stdout
    assert "pyrnn.bench: [" not in done.stdout
    assert "pyrnn.bench: [0/" in done.stderr  # progress lines went to stderr
    assert done.stdout.startswith("pyrnn.bench ")
    assert "== lstm: forward (inference), batch sizes" in done.stdout


def test_progress_draws_a_bar_on_a_terminal_and_lines_otherwise():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        p = Progress(4, stream)
        p.group("lstm 3x2x2x3")
        p.step("fwd b=1")
        p.step("fwd b=2")
        p.close()
    assert "\r[######" in tty.getvalue() and "2/4" in tty.getvalue()
    assert tty.getvalue().endswith("\r")
    assert pipe.getvalue() == "pyrnn.bench: [0/4] lstm 3x2x2x3\n"


@pytest.mark.parametrize("args, message", [
    (["--shapes", "10x2x3"], "expected TxBxIxH"),
    (["--shapes", "10x2x3xfour"], "integer sizes"),
    (["--shapes", "0x1x1x1"], "must be >= 1"),
    (["--shapes", "2x2x2x2,"], "comma-separated list"),
    (["--cells", "lstm,transformer"], "'transformer' is not one of rnn, lstm, gru"),
    (["--backends", "tensorflow"], "'tensorflow' is not one of numpy, c, cuda, torch"),
    (["--threads", "0"], "expected a positive integer, got 0"),
    (["--batch-sizes", "1,x"], "expected a positive integer, got 'x'"),
    (["--dtype", "float16"], "invalid choice: 'float16'"),
    (["--passes", "backward"], "'backward' is not one of fwd, train"),
    (["--quick", "--full"], "not allowed with argument"),
])
def test_bad_arguments_are_argparse_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: python -m pyrnn.bench" in err and message in err


def test_an_unavailable_backend_is_named_with_what_is_available(monkeypatch, capsys):
    monkeypatch.setattr(pyrnn, "available_backends", lambda: ["numpy"])
    with pytest.raises(SystemExit) as exc:
        main(["--backends", "numpy,c"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--backends: 'c' is not available here" in err and "available: numpy" in err


def test_out_must_be_a_directory(tmp_path, capsys):
    a_file = tmp_path / "results.json"
    a_file.write_text("{}")
    with pytest.raises(SystemExit):
        main(["--out", str(a_file)])
    assert "exists and is not a directory" in capsys.readouterr().err


def test_grids():
    assert grids.parse_shape(" 100X32x128x256 ") == grids.Shape(100, 32, 128, 256)
    assert grids.batch_sizes(64, (16, 1, 4, 128)) == (1, 4, 16, 64)
    assert grids.batch_sizes(1, (1, 4)) == (1,)
    assert grids.grid("default", "gru") == grids.PERFORMANCE_GRID
    full = grids.grid("full", "lstm")
    assert set(grids.PERFORMANCE_GRID) < set(full) and set(grids.HASTE_GRID) < set(full)


def test_bucketed_calls_cover_every_sequence_once_trimmed_to_its_bucket():
    shape = grids.Shape(9, 7, 2, 3)
    data = plan.ShapeData.draw(shape, np.float32, seed=3)
    config = [c for c in plan.configs(shape, (1, 4, 7), 3) if c.strategy == "bucketed"][0]
    calls, unit, steps = plan.calls(config, data, train=True)
    assert unit == len(calls) == 3 and steps == data.lengths.sum()
    got = sorted(int(v) for c in calls for v in c.lengths)
    assert got == sorted(data.lengths.tolist())
    for c in calls:
        assert c.x.shape[0] == c.lengths.max() == c.dy.shape[0]
        assert c.x.flags.c_contiguous and c.dy.flags.c_contiguous
    batched, unit, steps = plan.calls(plan.Config("batched", 3), data, train=False)
    assert len(batched) == 2 and unit == 1 and steps == 9 * 3 and batched[0].dy is None
    np.testing.assert_array_equal(batched[1].x, data.x[:, 3:6])


def test_flops_formula():
    # 2*T*B*G*H*(I+H) forward for an LSTM (G = 4), 3x with backward
    assert plan.flops("lstm", 100 * 32, 128, 256, train=False) == 2 * 100 * 32 * 4 * 256 * 384
    assert plan.flops("gru", 10, 3, 4, train=True) == 3 * 2 * 10 * 3 * 4 * 7


def test_check_errors():
    ref = np.array([3.0, 4.0])
    assert rel_error(ref + [0.0, 5e-5], ref) == pytest.approx(1e-5)
    assert rel_error(np.zeros(2), np.zeros(2)) == 0.0
    assert rel_error(np.array([np.nan, 0.0]), ref) == float("inf")
    assert rel_error(np.zeros(3), ref) == float("inf")
    verdict = compare({"out": ref, "h_n": ref * 2}, {"out": ref, "h_n": ref, "dx": ref},
                      np.float32)
    assert verdict["ok"] is False and verdict["worst"] == "dx"
    assert compare({"out": ref}, {"out": ref}, np.float64)["tolerance"] == 1e-10


def test_summarize_quartiles():
    stats = summarize([5.0, 1.0, 3.0, 2.0, 4.0], units_per_sample=10)
    assert (stats.median, stats.q1, stats.q3, stats.min, stats.max) == (3, 2, 4, 1, 5)
    assert stats.rel_spread == pytest.approx(2 / 3) and stats.samples == 5


def test_default_backends_time_numpy_beyond_quick_only_without_a_compiled_one(monkeypatch):
    torch = ("torch",) if HAS_TORCH else ()
    monkeypatch.setattr(pyrnn, "available_backends", lambda: ["c", "numpy"])
    assert cli.default_backends("quick") == ("numpy", "c") + torch
    assert cli.default_backends("default") == ("c",) + torch
    monkeypatch.setattr(pyrnn, "available_backends", lambda: ["numpy"])
    assert cli.default_backends("full") == ("numpy",) + torch


def test_interleaved_timing_cycles_each_runner_through_its_units():
    seen = [[], []]
    runners = [seen[0].append, seen[1].append]
    policy = TimingPolicy(min_sample_s=0.0, min_repeats=3, max_repeats=4, budget_s=1e9)
    stats = time_interleaved(runners, policy)
    # one sizing unit (also the first sample, as it needs no repeats), then the samples
    assert [s.samples for s in stats] == [4, 4]
    assert seen == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert all(s.units_per_sample == 1 and s.median >= 0 for s in stats)


def test_a_missing_c_backend_is_said(monkeypatch):
    reason = "ModuleNotFoundError: No module named 'pyrnn._pyrnn_c'"
    real = cli.why_unavailable
    monkeypatch.setattr(cli, "why_unavailable",
                        lambda name: reason if name == "c" else real(name))
    code, _, stderr = run_main(["--quick", "--shapes", "3x1x2x2", "--cells", "rnn",
                                "--backends", "numpy", "--threads", "1"])
    assert code == 0
    assert f"the C backend is not available here ({reason})" in stderr
    assert "pip install -e ." in stderr


def test_runners_that_call_blas_are_timed_after_the_others_start_in_quiet(monkeypatch):
    events = []
    monkeypatch.setattr(timing.time, "sleep", lambda s: events.append(("sleep", s)))
    runners = [lambda k, n=n: events.append((n, k)) for n in ("numpy", "c", "torch")]
    policy = TimingPolicy(min_sample_s=0.0, min_repeats=2, max_repeats=2, budget_s=1e9)
    stats = time_in_groups(runners, [True, False, False], policy)
    assert [s.samples for s in stats] == [2, 2, 2]
    # the pause, one untimed unit each of the others, their samples, then NumPy's alone
    assert events[:3] == [("sleep", timing.BLAS_QUIET_S), ("c", 0), ("torch", 0)]
    first_numpy = events.index(("numpy", 0))
    assert {e[0] for e in events[3:first_numpy]} == {"c", "torch"}
    assert {e[0] for e in events[first_numpy:]} == {"numpy"}
    assert timing.BLAS_QUIET_S >= 0.2  # OpenBLAS's threads spin for about 0.1 s
