"""Drop-in subclasses of torch.nn.RNN, LSTM, GRU and their cells that run pyrnn's kernels.

Same constructor (plus an optional ``backend=``), parameters, state_dict, ``forward`` and return
values as the parent; forward and backward go through pyrnn (see ``_function``), and in layers
that torch.compile traces through pyrnn's operators (``_ops``). What pyrnn cannot run
(projections, dtypes other than float32/float64, devices other than CPU and CUDA, autocast,
TorchScript, torch.func transforms, device tensors under torch.compile), and cells under
torch.compile (whose torch.nn step the compiler fuses), run the parent's own forward after one
warning per module and reason.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .._backend import Backend, follow_num_threads, resolve
from .._errors import BackendUnavailableError
from . import _ops
from ._cells import CellFunction, run_cell
from ._function import (
    SPECS,
    LayerFunction,
    StackCall,
    StackFunction,
    by_pointer,
    run_layer,
    run_stack,
)

# torch.compiler.is_compiling arrived in torch 2.3; before it, nothing here runs under dynamo
_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)

# whether a torch.func transform (grad, vmap, jacrev, ...) is running: they see through torch
# operations only (a private function of torch's; where a version lacks it, nothing is checked)
_func_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


def _autocast_enabled_before_2_4(device_type: str) -> bool:
    """torch.is_autocast_enabled(device_type) where it takes no argument and means CUDA."""
    return (torch.is_autocast_cpu_enabled() if device_type == "cpu"
            else device_type == "cuda" and torch.is_autocast_enabled())


def _autocast_check():
    """Whether autocast is on for tensors of a device type: torch's own function where it takes
    the type (torch 2.4 on), with no Python wrapper around it on a cell step's path."""
    try:
        torch.is_autocast_enabled("cpu")
    except TypeError:
        return _autocast_enabled_before_2_4
    return torch.is_autocast_enabled


_autocast_enabled = _autocast_check()


# pyrnn computes in the input's dtype; under autocast torch.nn may not (on the CPU autocast casts
# nn.RNN and nn.LSTM to bfloat16), so the parent's forward gives what the user asked autocast for
_AUTOCAST_REASON = ("autocast is on (torch.nn may compute this module in lower precision; "
                    "pyrnn computes in the input's dtype)")


class FallbackWarning(UserWarning):
    """A pyrnn.torch module ran its torch.nn parent's forward because pyrnn cannot run the call."""


def _layers_traced() -> bool:
    """Whether torch.compile traces into recurrent layers (an option of its, off by default:
    torch.nn's RNN, LSTM and GRU then run in eager mode, a graph break)."""
    return bool(torch._dynamo.config.allow_rnn)


def _eager_forward(module, input, hx):
    return module._forward(input, hx, False)


_hidden_forward = None


def _hidden_from_compiler(module, input, hx):
    """A module's forward in eager mode, hidden from torch.compile (0.6 us a call): where the
    compiler watches the eager path (a layer it does not trace, a frame it gave up on and runs
    eagerly), it would try each function the path calls as a graph of its own and fail in
    pyrnn._c's cffi calls. Made at the first such call: making it imports the compiler (1.4-1.5 s),
    which is loaded by then."""
    global _hidden_forward
    if _hidden_forward is None:
        disable = getattr(torch.compiler, "disable", None) or torch._dynamo.disable
        _hidden_forward = disable(_eager_forward)
    return _hidden_forward(module, input, hx)


# what torch.compile has set to watch the frames Python runs (None: nothing; 36 ns, a private
# function of torch's: where a version lacks it, every eager call takes the hidden way)
_compiler_callback = getattr(getattr(getattr(torch._C, "_dynamo", None), "eval_frame", None),
                             "get_eval_frame_callback", lambda: True)


def _warn_while_compiling(ctx) -> None:
    """Warn with the local ``message`` of the frame torch.compile is tracing (its ``comptime``
    runs this while compiling; a function run there may not close over variables)."""
    warnings.warn(ctx.get_local("message").as_python_constant(), FallbackWarning, stacklevel=2)


class _PyrnnModule:
    """What layers and cells share: the backend choice, the fallback decision and its warning."""

    backend: str | None = None  # None: $PYRNN_BACKEND, else auto
    _pyrnn_warned: frozenset = frozenset()

    def __init__(self, *args, backend: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)  # the torch.nn parent's constructor
        if backend is not None:
            resolve(backend)  # fail at construction, not at the first call
        self.backend = backend

    def forward(self, input, hx=None):
        if _is_compiling() and self._compiler_traces():
            return self._forward(input, hx, True)  # pyrnn's operators in the graph
        if _compiler_callback() is not None:  # eager code that the compiler watches
            return _hidden_from_compiler(self, input, hx)
        return self._forward(input, hx, False)

    @staticmethod
    def _compiler_traces() -> bool:
        """Whether torch.compile traces this kind of module (cells: always)."""
        return True

    def _parent_forward(self, input, hx):
        """The torch.nn parent's forward."""
        return super().forward(input, hx)

    def _backend_or_reason(self, data: torch.Tensor,
                           compiling: bool) -> tuple[Backend | str | None, str | None]:
        """The backend for a call on ``data`` (``compiling``, traced by torch.compile: the name
        of this module's setting, "" for the default, which pyrnn's operators resolve when the
        graph runs), or why the parent's forward must run it."""
        reason = self._config_reason()
        if reason is not None:
            return None, reason
        if torch.jit.is_scripting() or torch.jit.is_tracing():
            return None, "TorchScript tracing or scripting records torch operations only"
        if compiling:
            return self._compiled_backend_or_reason(data)
        if _func_transforms_active():
            return None, "torch.func transforms (grad, vmap, ...) see through torch operations only"
        if data.dtype not in (torch.float32, torch.float64):
            return None, f"dtype {data.dtype} (pyrnn runs float32 and float64)"
        if data.is_cpu:  # a flag: the device's type is a new string each time
            if _autocast_enabled("cpu"):
                return None, _AUTOCAST_REASON
            follow_num_threads(torch.get_num_threads())  # as torch.nn computes on the host
            return resolve(self.backend), None
        device = data.device.type
        if device == "cuda":
            if _autocast_enabled("cuda"):
                return None, _AUTOCAST_REASON
            try:
                return resolve(self.backend or "cuda"), None
            except BackendUnavailableError as exc:
                if self.backend is not None:
                    raise
                return None, str(exc)
        return None, f"device {device!r} (pyrnn runs CPU and CUDA tensors)"

    def _compiled_backend_or_reason(self, data: torch.Tensor) -> tuple[str | None, str | None]:
        """``_backend_or_reason`` under torch.compile (what the compiler can trace)."""
        if not _ops.available():
            return None, "torch.compile needs torch 2.4's custom operators to keep pyrnn's kernels"
        if not data.is_cpu or self.backend not in (None, "auto", *_ops.HOST_BACKENDS):
            return None, (f"torch.compile with {data.device.type} tensors on backend "
                          f"{self.backend or 'auto'!r} (pyrnn's compiled operators run host "
                          f"tensors on the host backends)")
        if data.dtype not in (torch.float32, torch.float64):
            return None, f"dtype {data.dtype} (pyrnn runs float32 and float64)"
        if _autocast_enabled("cpu"):
            return None, _AUTOCAST_REASON
        return self.backend or "", None

    def _config_reason(self) -> str | None:
        """Why this module's configuration needs the parent's forward (None: it does not)."""
        return None

    def __prepare_scriptable__(self) -> nn.Module:
        """torch.jit.script's hook: TorchScript compiles a module's forward from its source,
        which calls pyrnn's kernels through Python it cannot compile, so it gets the torch.nn
        parent in this module's place: a copy of this one of the parent's class, holding the
        same parameters. torch.jit.script puts what the hook returns in the scripted module's
        parents in place (torch.nn's forward then runs there in eager mode too, until
        ``convert`` makes it pyrnn's again)."""
        parent = self._parent_class()
        warnings.warn(f"pyrnn.torch.{type(self).__name__}: TorchScript compiles "
                      f"torch.nn.{parent.__name__}'s forward in its place (it cannot call "
                      f"pyrnn's kernels)", FallbackWarning, stacklevel=3)
        twin = copy.copy(self)
        twin.__class__ = parent
        for name in ("backend", "_pyrnn_warned"):
            twin.__dict__.pop(name, None)
        return twin

    def _parent_class(self) -> type:
        """The torch.nn class this module's drop-in class replaces."""
        return next(c for c in type(self).__mro__ if c.__module__.startswith("torch."))

    def _warn_fallback(self, reason: str) -> None:
        if reason in self._pyrnn_warned:
            return
        self._pyrnn_warned = self._pyrnn_warned | {reason}
        parent = self._parent_class()
        message = (f"pyrnn.torch.{type(self).__name__}: {reason}; running "
                   f"torch.nn.{parent.__name__}'s own forward instead")
        if _is_compiling():  # the compiler cannot trace a warning: it warns while compiling
            torch._dynamo.comptime.comptime(_warn_while_compiling)
        else:  # the caller of module(...), past nn.Module's call wrappers
            warnings.warn(message, FallbackWarning, stacklevel=5)

    def _check_like(self, x, tensors) -> None:
        """Raise unless each of ``tensors`` (states and weights; None skipped) has x's dtype and
        device, as torch.nn does (a backend would convert them silently)."""
        dtype, device, on_cpu = x.dtype, x.device, x.is_cpu
        for t in tensors:  # on the host, a flag is cheaper than a new device to compare
            if t is not None and (t.dtype is not dtype
                                  or (not t.is_cpu if on_cpu else t.device != device)):
                raise RuntimeError(f"pyrnn.torch.{type(self).__name__}: expected every state and "
                                   f"weight as {dtype} on {device} like the input, got "
                                   f"{t.dtype} on {t.device}")

    def _apply_stack(self, call: StackCall, x, h0, c0, weights):
        """Run the call, by pointer where it is one layer and one direction on the C backend
        (``by_pointer``), else through the stack; through an autograd function when backward
        will need it (else outside autograd: nothing to record). x [T,B,I], h0/c0 [L*D,B,H] or
        None, weights flat."""
        self._check_like(x, (h0, c0, *weights))
        x, h0, c0 = (None if t is None else t.contiguous() for t in (x, h0, c0))
        weights = [None if w is None else w.contiguous() for w in weights]
        pointers = by_pointer(call, x)
        if call.keep_workspace:
            return (LayerFunction if pointers else StackFunction).apply(call, x, h0, c0, *weights)
        return (run_layer if pointers else run_stack)(call, x, h0, c0, weights)[0]

    def _needs_workspace(self, tensors) -> bool:
        return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _check_state_dims(states, dims: int, batched: bool) -> None:
    """PyTorch's rule: batched input takes 3-D (cells: 2-D) states, unbatched one fewer."""
    for k, s in enumerate(states):
        if s is not None and s.dim() != dims:
            kind = "batched" if batched else "unbatched"
            name = "hx" if len(states) == 1 else f"hx[{k}]"
            raise RuntimeError(f"For {kind} input, {name} should be {dims}-D but got "
                               f"{s.dim()}-D tensor")


class _Layer(_PyrnnModule):
    """forward for RNN, LSTM and GRU (mixed in before the torch.nn parent)."""

    @staticmethod
    def _compiler_traces() -> bool:
        return _layers_traced()

    def _forward(self, input, hx, compiling: bool):
        packed = isinstance(input, PackedSequence)
        if not packed and 0 in input.shape:  # torch.nn's empty results (or its error for T=0)
            return self._parent_forward(input, hx)
        backend, reason = self._backend_or_reason(input.data if packed else input, compiling)
        if reason is not None:
            self._warn_fallback(reason)
            return self._parent_forward(input, hx)
        is_lstm = self.mode == "LSTM"
        if packed:
            # one unpacking to padded [T,B,I] in sorted order; pyrnn runs the lengths directly
            x, lengths = pad_packed_sequence(PackedSequence(input.data, input.batch_sizes))
            hx = None if hx is None else self.permute_hidden(hx, input.sorted_indices)
            self._check_args(input.data, hx, input.batch_sizes)
            batched = True
        else:
            x, hx, batched = self._as_batched(input, hx, is_lstm)
            self._check_args(x, hx, None)
            x = x.transpose(0, 1) if self.batch_first else x
            lengths = None
        h0, c0 = (None, None) if hx is None else (hx if is_lstm else (hx, None))
        out, *state = self._run(backend, x, h0, c0, lengths, compiling)
        hidden = tuple(state) if is_lstm else state[0]
        if packed:
            data = pack_padded_sequence(out, lengths).data
            return (PackedSequence(data, input.batch_sizes, input.sorted_indices,
                                   input.unsorted_indices),
                    self.permute_hidden(hidden, input.unsorted_indices))
        if not batched:
            return out.squeeze(1), (tuple(s.squeeze(1) for s in hidden) if is_lstm
                                    else hidden.squeeze(1))
        return (out.transpose(0, 1) if self.batch_first else out), hidden

    def _config_reason(self) -> str | None:
        if self.proj_size > 0:
            return "proj_size > 0 (LSTM projections are not in pyrnn)"
        if self.training and self.dropout == 1:
            return "dropout=1 drops every activation"
        return None

    def _as_batched(self, input, hx, is_lstm):
        if input.dim() not in (2, 3):
            raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got "
                             f"{input.dim()}D instead")
        batched = input.dim() == 3
        states = (hx if is_lstm else (hx,)) if hx is not None else ()
        _check_state_dims(states, 3 if batched else 2, batched)
        if batched:
            return input, hx, True
        input = input.unsqueeze(0 if self.batch_first else 1)
        if hx is not None:
            hx = tuple(s.unsqueeze(1) for s in hx) if is_lstm else hx.unsqueeze(1)
        return input, hx, False

    def _check_args(self, input, hx, batch_sizes):
        if hx is None:
            self.check_input(input, batch_sizes)
        else:
            self.check_forward_args(input, hx, batch_sizes)

    def _current_weights(self) -> list:
        """The weights in ``_flat_weights_names``' order as they are now. The parent keeps them
        in ``_flat_weights``, which misses a weight that is no longer the registered Parameter
        (torch.func.functional_call puts other tensors in ``_parameters``; a parametrization
        computes its weight at each access), so those are read as the parent's forward reads
        them; the usual case costs a dictionary lookup a weight."""
        flat, params = self._flat_weights, self._parameters
        for name, w in zip(self._flat_weights_names, flat):
            if params.get(name) is not w:
                return [getattr(self, name) for name in self._flat_weights_names]
        return flat

    def _run(self, backend, x, h0, c0, lengths, compiling: bool):
        weights = self._current_weights()
        dropout = self.dropout if self.training and self.num_layers > 1 else 0.0
        training = self._needs_workspace((x, h0, c0, *weights))
        directions = 2 if self.bidirectional else 1
        if compiling:
            self._check_like(x, (h0, c0, *weights))
            return _ops.run_stack(self.mode, backend, self.num_layers, directions, self.bias, x,
                                  h0, c0, weights, lengths, dropout, training)
        T = x.shape[0]
        lengths = None if lengths is None or int(lengths[-1]) == T else lengths.numpy()
        call = StackCall(SPECS[self.mode], backend, self.num_layers, directions, self.bias,
                         lengths, dropout, training or dropout > 0)
        return self._apply_stack(call, x, h0, c0, weights)


_CELL_WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
# a loop of LSTMCell steps of B=1 H=128 compiled: torch.nn's 47 us a step, pyrnn's operator 190
# (benchmarks/RESULTS.md)
_COMPILED_CELL_REASON = ("torch.compile fuses torch.nn's cell step into code faster than "
                         "pyrnn's one-step operator")


class _Cell(_PyrnnModule):
    """forward for RNNCell, LSTMCell and GRUCell: one step through the same kernels."""

    @property
    def _mode(self) -> str:
        if isinstance(self, nn.RNNCell):
            return "RNN_RELU" if self.nonlinearity == "relu" else "RNN_TANH"
        return "LSTM" if isinstance(self, nn.LSTMCell) else "GRU"

    def _compiled_backend_or_reason(self, data):
        return None, _COMPILED_CELL_REASON

    def _forward(self, input, hx, compiling: bool):
        backend, reason = self._backend_or_reason(input, compiling)
        if reason is not None:
            self._warn_fallback(reason)
            return self._parent_forward(input, hx)
        spec = SPECS[self._mode]
        is_lstm, dims = spec.has_cell_state, input.dim()
        if dims not in (1, 2):
            raise ValueError(f"{type(self).__name__}: Expected input to be 1D or 2D, got "
                             f"{dims}D instead")
        batched = dims == 2
        states = (hx if is_lstm else (hx,)) if hx is not None else ()
        _check_state_dims(states, dims, batched)
        if not batched:
            input = input.unsqueeze(0)
            states = [s.unsqueeze(0) for s in states]
        B, I = input.shape
        H = self.hidden_size
        # an empty batch (a batched input: unbatched has B=1), or a cell of input or hidden size
        # 0 (torch.nn makes those; pyrnn's sizes start at 1): torch.nn's results
        if B == 0 or I == 0 or H == 0:
            return self._parent_forward(input, hx)
        if I != self.input_size:
            raise RuntimeError(f"{type(self).__name__}: input has inconsistent input_size: got "
                               f"{I} expected {self.input_size}")
        for s in states:
            if s.shape != (B, H):
                raise RuntimeError(f"{type(self).__name__}: expected hidden state of shape "
                                   f"{[B, H]} for input batch {B}, got {list(s.shape)}")
        h0, c0 = (*states, None, None)[:2]
        weights = self._current_weights()
        self._check_like(input, (h0, c0, *weights))
        if self._needs_workspace((input, h0, c0, *weights)):
            out = CellFunction.apply(spec, backend, input, h0, c0, *weights)
            h, c = out if is_lstm else (out, None)
        else:  # outside autograd: nothing to record
            h, c, _ = run_cell(spec, backend, input, h0, c0, weights, False)
        if not batched:
            h, c = h.squeeze(0), (None if c is None else c.squeeze(0))
        return (h, c) if is_lstm else h

    def _current_weights(self) -> tuple:
        """(w_ih, w_hh[, b_ih, b_hh]) as the parent's forward reads them, ``self.weight_ih`` and
        so on: a registered one (or what torch.func.functional_call put in its place) by a
        dictionary lookup, which nn.Module's attribute fallback took 1 us a weight to reach;
        any other (a parametrization's, a pruned weight) as an attribute."""
        params, weights = self._parameters, []
        for name in _CELL_WEIGHT_NAMES if self.bias else _CELL_WEIGHT_NAMES[:2]:
            w = params.get(name)
            weights.append(getattr(self, name) if w is None else w)
        return tuple(weights)


class RNN(_Layer, nn.RNN):
    """torch.nn.RNN (tanh or relu) running pyrnn's kernels."""


class LSTM(_Layer, nn.LSTM):
    """torch.nn.LSTM running pyrnn's kernels (proj_size > 0 falls back to the parent)."""


class GRU(_Layer, nn.GRU):
    """torch.nn.GRU running pyrnn's kernels (PyTorch's GRU is pyrnn's reset_after=True)."""


class RNNCell(_Cell, nn.RNNCell):
    """torch.nn.RNNCell running pyrnn's kernels."""


class LSTMCell(_Cell, nn.LSTMCell):
    """torch.nn.LSTMCell running pyrnn's kernels."""


class GRUCell(_Cell, nn.GRUCell):
    """torch.nn.GRUCell running pyrnn's kernels."""


_LAYERS = {nn.RNN: RNN, nn.LSTM: LSTM, nn.GRU: GRU}
_CELLS = {nn.RNNCell: RNNCell, nn.LSTMCell: LSTMCell, nn.GRUCell: GRUCell}


def convert(model: nn.Module, backend: str | None = None, *, cells: bool = True) -> nn.Module:
    """Make every torch.nn.RNN/LSTM/GRU (and cell) inside ``model`` run pyrnn, in place.

    Each module keeps its identity, parameters (the same Parameter objects, so an optimizer
    made before stays valid), device, dtype, hooks and mode: only its class changes to the
    drop-in. Subclasses of those classes are left alone (they may override forward).
    ``backend`` names pyrnn's backend for the converted modules (None: $PYRNN_BACKEND, else
    auto). ``cells=False`` leaves RNNCell, LSTMCell and GRUCell to torch.nn: a cell runs one
    step a call, and on the CPU at small sizes what each call costs besides the step makes
    pyrnn's slower than torch.nn's (benchmarks/RESULTS.md, ``benchmarks/torch_cells.py``).
    Returns ``model``.
    """
    if backend is not None:
        resolve(backend)
    replacements = {**_LAYERS, **_CELLS} if cells else _LAYERS
    for module in model.modules():
        drop_in = replacements.get(type(module))
        if drop_in is not None:
            module.__class__ = drop_in
        if isinstance(module, _PyrnnModule) and backend is not None:
            module.backend = backend
    return model
