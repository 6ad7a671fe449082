"""The correctness check every timed result passes once before it is timed."""

from __future__ import annotations

import numpy as np

# Relative Frobenius error allowed against the NumPy reference, per data type.
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def rel_error(a: np.ndarray, ref: np.ndarray) -> float:
    """|a - ref| / |ref| (Frobenius); the absolute error where ref is all zeros."""
    if a.shape != ref.shape:
        return float("inf")
    diff = np.linalg.norm((a - ref).ravel().astype(np.float64))
    scale = np.linalg.norm(ref.ravel().astype(np.float64))
    if not np.isfinite(diff):  # NaN or inf in the result: as wrong as it gets
        return float("inf")
    return float(diff / scale) if scale > 0 else float(diff)


def compare(result: dict, reference: dict, dtype) -> dict:
    """Worst relative error over the reference's tensors, and whether it is within tolerance.

    result, reference: name -> array (out, h_n, c_n, dx and the parameter gradients).
    Returns {"ok", "max_rel_err", "worst", "tolerance"}; a tensor missing from ``result``
    counts as an infinite error.
    """
    tolerance = TOLERANCE[np.dtype(dtype)]
    errors = {name: rel_error(result[name], ref) if name in result else float("inf")
              for name, ref in reference.items()}
    worst = max(errors, key=errors.get)
    err = errors[worst]
    return {"ok": bool(err <= tolerance), "max_rel_err": err, "worst": worst,
            "tolerance": tolerance}
