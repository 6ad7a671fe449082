"""Backend resolution, availability reporting and the NumPy fallback."""

import subprocess
import sys

import numpy as np
import pytest

import pyrnn
from pyrnn import _backend


def test_available_backends_lists_numpy_last():
    names = pyrnn.available_backends()
    assert names[-1] == "numpy"
    assert set(names) <= {"cuda", "c", "numpy"}


def test_backend_info_reports_choice_and_versions():
    info = pyrnn.backend_info()
    assert info["auto"] in info["available"]
    assert info["numpy_version"] == np.__version__
    assert info["auto"] == _backend.resolve(None).name


def test_environment_variable_and_argument_order(monkeypatch):
    monkeypatch.setenv("PYRNN_BACKEND", "numpy")
    assert _backend.resolve("auto").name == "numpy"
    assert _backend.resolve(None).name == "numpy"
    monkeypatch.setenv("PYRNN_BACKEND", "bogus")
    with pytest.raises(ValueError, match="backend: expected one of"):
        _backend.resolve(None)
    assert _backend.resolve("numpy").name == "numpy"  # the argument wins


def test_unavailable_backend_names_the_fix(monkeypatch):
    monkeypatch.setitem(_backend._failures, "c", "ImportError: no compiler")
    monkeypatch.delitem(_backend._loaded, "c", raising=False)
    with pytest.raises(pyrnn.BackendUnavailableError, match=r"backend 'c' is not available "
                                                           r"\(ImportError: no compiler\); to get "
                                                           r"it, reinstall pyrnn"):
        pyrnn.GRU(2, 2, backend="c")


def test_auto_falls_back_to_numpy_with_one_warning(monkeypatch):
    monkeypatch.setitem(_backend._failures, "c", "ImportError: no compiler")
    monkeypatch.delitem(_backend._loaded, "c", raising=False)
    monkeypatch.setattr(_backend, "_warned_numpy_fallback", False)
    monkeypatch.delenv("PYRNN_BACKEND", raising=False)
    with pytest.warns(RuntimeWarning, match="slow NumPy reference") as record:
        assert _backend.resolve("auto").name == "numpy"
        assert _backend.resolve("auto").name == "numpy"
    assert len(record) == 1


def test_set_num_threads_validates():
    for bad in (0, -1, 257, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"set_num_threads: expected an int in 1\.\.256"):
            pyrnn.set_num_threads(bad)
    pyrnn.set_num_threads(1)


def test_importing_pyrnn_imports_neither_torch_nor_numba():
    code = ("import sys, pyrnn; pyrnn.GRU(2, 2); "
            "print('torch' in sys.modules, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_install_without_a_compiler_succeeds(tmp_path):
    """setup.py's build_ext warns and carries on when the C compiler fails."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(root / name, tmp_path / name)
    shutil.copytree(root / "csrc", tmp_path / "csrc")
    env = {"CC": "false", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-lib", "out"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "pyrnn's C extension was not built" in res.stderr
    assert not list((tmp_path / "out").rglob("*.so"))
