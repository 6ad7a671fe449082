"""Shared fixtures: the host backends every module-level test runs through."""

import os

# The kernels' thread decisions depend on the team's measured barrier cost; the tests pin the
# cost the thresholds assume, so the shapes meant to run on two or three threads do on any
# machine (tests/test_c_threads.py checks the measurement itself in a fresh process).
os.environ.setdefault("PYRNN_BARRIER_NS", "60")
# Nor may a team that idled between two tests run their small shapes on one thread (the idle
# rule has its own test: selftest --idle, in the sanitizer job).
os.environ.setdefault("PYRNN_TEAM_IDLE_NS", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import pyrnn  # noqa: E402

HOST_BACKENDS = [b for b in pyrnn.available_backends() if b in ("c", "numpy")]

# (cell kind, module class name, flags) for every cell and variant
VARIANTS = [
    ("rnn", "RNN", {"nonlinearity": "tanh"}),
    ("rnn", "RNN", {"nonlinearity": "relu"}),
    ("lstm", "LSTM", {}),
    ("gru", "GRU", {"reset_after": True}),
    ("gru", "GRU", {"reset_after": False}),
]


def variant_id(v):
    kind, _, flags = v
    return kind + "".join(f"-{k}={val}" for k, val in flags.items())


@pytest.fixture(params=HOST_BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


FD_EPS = 1e-6


def numeric_grad(f, arr):
    """Central differences of scalar f() with respect to every element of arr (in place)."""
    g = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + FD_EPS
        up = f()
        arr[idx] = old - FD_EPS
        down = f()
        arr[idx] = old
        g[idx] = (up - down) / (2 * FD_EPS)
    return g


def rel_err(a, b):
    """Relative Frobenius error |a-b|/|b| (absolute when b is zero)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    nb = np.linalg.norm(b)
    return np.linalg.norm(a - b) / (nb if nb > 0 else 1.0)
