"""Every example runs with --quick, reaches its thresholds and says what it reached; untrained,
the examples that train must miss their thresholds and exit non-zero."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# example -> lines its report must contain
KEY_LINES = {
    "sine_forecast": ["test MSE", "noise floor", "free-running forecast, 40 steps: MSE"],
    "sequence_sum": ["RNN(relu)  test MSE", "LSTM       test MSE"],
    "long_term_memory": ["RNN   held-out accuracy", "LSTM  held-out accuracy",
                         "GRU   held-out accuracy", "ok      RNN stays at chance"],
    "vanishing_gradients": ["RNN, scale 0.5", "RNN, scale 3.0", "LSTM forget bias 3, scale 3.0",
                            "clipping the exploding RNN's parameter gradients"],
    "sentiment": ["held-out accuracy"],
    "bidirectional": ["unidirectional GRU per-step accuracy", "bidirectional GRU  per-step"],
    "seq2seq": ["greedy decoding on 2000 new sequences: sequence accuracy"],
    "attention": ["attention on the steps before the signal", "attention weights on one sequence"],
    "sequential_vs_batched": ["batched == one at a time", "speedup"],
}
TRAINING = [name for name in KEY_LINES
            if name not in ("vanishing_gradients", "sequential_vs_batched")]


def run_example(name, *args, cwd):
    return subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def test_every_example_is_tested():
    assert {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")} == set(KEY_LINES)


@pytest.mark.parametrize("name", KEY_LINES)
def test_example_reaches_its_thresholds(name, tmp_path):
    args = ["--out", str(tmp_path / "plot.png")] if name == "vanishing_gradients" else []
    result = run_example(name, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all thresholds reached" in result.stdout
    assert "FAILED" not in result.stdout
    for line in KEY_LINES[name]:
        assert line in result.stdout, f"{line!r} missing from:\n{result.stdout}"


@pytest.mark.parametrize("name", TRAINING)
def test_untrained_example_fails_its_thresholds(name, tmp_path):
    result = run_example(name, "--steps", "0", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED" in result.stdout
    assert "Traceback" not in result.stderr


def test_vanishing_gradients_writes_its_plot_on_the_numpy_backend(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "grads.png"
    result = run_example("vanishing_gradients", "--backend", "numpy", "--out", str(out),
                         cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "on numpy" in result.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
