"""The CUDA backend's behaviour outside the simulator: availability and lazy import."""

import os
import subprocess
import sys

import pytest

import pyrnn


def test_importing_pyrnn_does_not_import_numba():
    code = ("import sys, numpy as np, pyrnn; m = pyrnn.RNN(2, 3, backend='numpy'); "
            "m(np.zeros((2, 1, 2), np.float32)); assert 'numba' not in sys.modules, 'numba'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "PYRNN_BACKEND"})
    assert proc.returncode == 0, proc.stderr


def test_cuda_listed_only_where_it_can_run():
    import pyrnn.cuda as cu
    from pyrnn.cuda import _runtime

    if _runtime.SIMULATOR or _runtime.cuda.is_available():
        cu.check_available()
        assert "cuda" in pyrnn.available_backends()
        return
    with pytest.raises(pyrnn.BackendUnavailableError, match="NUMBA_ENABLE_CUDASIM=1"):
        cu.check_available()
    assert "cuda" not in pyrnn.available_backends()
    assert "NUMBA_ENABLE_CUDASIM" in pyrnn.backend_info()["unavailable"]["cuda"]
    with pytest.raises(pyrnn.BackendUnavailableError, match=r'pip install "pyrnn\[cuda\]"'):
        pyrnn.LSTM(2, 3, backend="cuda")
