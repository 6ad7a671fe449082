"""RNN, LSTM and GRU layers and cells with PyTorch's parameters, names and semantics.

Parameters live on the host as NumPy arrays, or on the GPU after ``m.to("cuda")`` (uploaded
once, as Numba device arrays). Every array a call takes (x, states, gradients) must be on the
same side as the parameters, and its results come back on that side: host arrays give NumPy
results; with the parameters on the GPU, device arrays (Numba, CuPy, PyTorch CUDA tensors) give
Numba device arrays and nothing is copied to the host. An array on the other side raises
ValueError naming the fix; only ``lengths`` may come from either side (a device one is copied to
the host to check its values).
"""

from __future__ import annotations

import numpy as np

from . import _checks, _host_ops
from ._backend import resolve
from ._steps import step_backward, step_forward
from .functional import CellSpec, stack_backward, stack_forward


def _device_ops():
    """The CUDA backend's array operations (raises, naming the fix, where it cannot run)."""
    return resolve("cuda").array_ops


def _host_lengths(lengths):
    """lengths as the host array validation reads (a device array is copied: B integers)."""
    return _device_ops().to_host(lengths) if _checks.is_device_array(lengths) else lengths


def _asked(input_grad, state_grad) -> tuple[bool, bool] | None:
    """A backward's ``input_grad`` and ``state_grad``, checked; None when both are asked for
    (every gradient: the backends' default)."""
    asked = (_checks.check_bool("input_grad", input_grad),
             _checks.check_bool("state_grad", state_grad))
    return None if all(asked) else asked


def _drop_batch(a):
    """[N,1,K] -> [N,K]: the batch axis of an unbatched call removed."""
    return a.reshape(a.shape[0], a.shape[2])


class _TrainContext:
    """What ``forward_train`` keeps for ``backward``: opaque to users."""

    def __init__(self, owner, kept, unbatched, batch_first, hx_given):
        self.owner = owner
        self.kept = kept  # a layer's StackContext; a cell's backend and step (pyrnn._steps)
        self.unbatched = unbatched
        self.batch_first = batch_first
        self.hx_given = hx_given
        self.on_device = owner._on_device


class _Recurrent:
    """Parameters, state_dict and argument checking shared by layers and cells."""

    _kind = ""
    _on_device = False

    def _init_params(self, names_shapes, hidden_size, seed):
        # PyTorch's initialisation: every parameter uniform in +-1/sqrt(H)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(hidden_size)
        self._params = {name: rng.uniform(-bound, bound, size=shape).astype(self.dtype)
                        for name, shape in names_shapes}
        self._rng = rng

    @property
    def device(self) -> str:
        """Where the parameters live: ``"cpu"`` (NumPy arrays) or ``"cuda"`` (device arrays)."""
        return "cuda" if self._on_device else "cpu"

    def _ops(self):
        """The array operations for this module's side (``pyrnn/_host_ops.py``'s names)."""
        return _device_ops() if self._on_device else _host_ops

    def to(self, device: str):
        """Move the parameters to ``"cuda"`` (one upload; calls then run the CUDA backend on
        device arrays) or back to ``"cpu"``; returns the module.

        The dict ``parameters()`` returns is updated in place, so it stays the live one; arrays
        taken out of it before the move are copies from then on, no longer the module's.
        """
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
        on_device = device == "cuda"
        if on_device == self._on_device:
            return self
        if on_device:
            if self.backend not in (None, "auto", "cuda"):
                raise ValueError(f"device: this {type(self).__name__} was built with backend="
                                 f"{self.backend!r}, which runs on the host; build it with "
                                 f"backend='cuda' or 'auto' to move it to the GPU")
            ops = _device_ops()
            moved = {name: ops.to_device(p, self.dtype) for name, p in self._params.items()}
        else:
            moved = {name: _device_ops().to_host(p) for name, p in self._params.items()}
        self._params.update(moved)
        self._on_device = on_device
        return self

    def parameters(self) -> dict:
        """The live parameter arrays by state_dict name; update them in place to train.

        On the host they are NumPy arrays (``pyrnn.train``'s optimisers update them). After
        ``to("cuda")`` they are Numba device arrays and ``backward`` returns the gradients as
        device arrays of the same shapes: update them on the device, e.g. an SGD step with
        ``pyrnn.cuda.array_ops.add(p, g, -lr, out=p)``, or any optimiser through zero-copy
        views (``cupy.asarray(p)``, ``torch.as_tensor(p, device="cuda")``).
        """
        return self._params

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host (NumPy) copies of the parameters, with PyTorch's names and shapes, wherever the
        parameters live."""
        ops = self._ops()
        return {name: ops.to_host(p) for name, p in self._params.items()}

    def load_state_dict(self, state_dict) -> None:
        """Load parameters from a mapping (a torch state_dict works as it is).

        Values may be host or device arrays whatever the module's device: they are copied into
        the existing parameter arrays, which stay where they are (and stay the live ones).
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict: expected a mapping of name -> array, got "
                            f"{type(state_dict).__name__}")
        missing = sorted(set(self._params) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(self._params))
        if missing or unexpected:
            raise ValueError(f"state_dict: keys do not match this {type(self).__name__}; missing "
                             f"{missing}, unexpected {unexpected}")
        new = {}
        for name, p in self._params.items():
            label, value = f"state_dict[{name!r}]", state_dict[name]
            if self._on_device and _checks.is_device_array(value):
                arr = _checks.as_operand(label, value, self.dtype, on_device=True)
            else:
                if _checks.is_device_array(value) and not hasattr(value, "detach"):
                    value = _device_ops().to_host(value)  # torch tensors: as_float_array
                arr = _checks.as_float_array(label, value, self.dtype)
            if _checks.shape_of(arr) != tuple(p.shape):
                raise ValueError(f"{label}: expected shape {list(p.shape)}, got "
                                 f"{list(_checks.shape_of(arr))}")
            new[name] = arr
        ops = self._ops()
        for name, arr in new.items():
            ops.copy_into(self._params[name], arr)

    def _check_ctx(self, ctx):
        if not isinstance(ctx, _TrainContext):
            raise TypeError(f"ctx: expected the context returned by forward_train, got "
                            f"{type(ctx).__name__}")
        if ctx.owner is not self:
            raise ValueError("ctx: this context was made by forward_train of another module; "
                             "call backward on the module that made it")
        if ctx.on_device != self._on_device:
            raise ValueError(f"ctx: the module moved to {self.device!r} after forward_train; "
                             f"run forward_train again where the parameters are now")

    def _backend(self, x):
        """The backend of a call: the CUDA one while the parameters are on the GPU."""
        return resolve("cuda") if self._on_device else resolve(self.backend, (x,))


class _Layer(_Recurrent):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, backend="auto", seed=None,
                 **flags):
        self.input_size = _checks.check_size("input_size", input_size)
        self.hidden_size = _checks.check_size("hidden_size", hidden_size)
        self.num_layers = _checks.check_size("num_layers", num_layers)
        self.bias = _checks.check_bool("bias", bias)
        self.batch_first = _checks.check_bool("batch_first", batch_first)
        self.dropout = _checks.check_probability("dropout", dropout)
        self.bidirectional = _checks.check_bool("bidirectional", bidirectional)
        self.dtype = _checks.check_dtype(dtype)
        self.backend = backend
        resolve(backend)  # fail now, not at the first call, if the backend cannot run
        self._spec = CellSpec(self._kind, tuple(sorted(flags.items())))
        G, H = self._spec.gates, self.hidden_size
        shapes = []
        for layer in range(self.num_layers):
            I = self.input_size if layer == 0 else H * self.num_directions
            for suffix in ("", "_reverse")[: self.num_directions]:
                shapes += [(f"weight_ih_l{layer}{suffix}", (G * H, I)),
                           (f"weight_hh_l{layer}{suffix}", (G * H, H))]
                if self.bias:
                    shapes += [(f"bias_ih_l{layer}{suffix}", (G * H,)),
                               (f"bias_hh_l{layer}{suffix}", (G * H,))]
        self._init_params(shapes, H, seed)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _weights(self):
        p = self._params
        return [[tuple(p.get(f"{kind}_l{layer}{suffix}")
                       for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                 for suffix in ("", "_reverse")[: self.num_directions]]
                for layer in range(self.num_layers)]

    def _prepare(self, x, hx, lengths):
        dev = self._on_device
        x, unbatched = _checks.check_input(x, self.input_size, self.batch_first, self.dtype,
                                           on_device=dev)
        if self.batch_first and not unbatched:
            x = self._ops().swap01(x)
        T, B, _ = _checks.shape_of(x)
        if unbatched and lengths is not None:
            raise ValueError("lengths: unbatched input [T,I] has one sequence; pass lengths only "
                             "with batched input")
        lengths = _checks.check_lengths(_host_lengths(lengths), T, B, self.batch_first)
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        shape, what = ((LD, H), "[num_layers*num_directions,H]") if unbatched else \
            ((LD, B, H), "[num_layers*num_directions,B,H]")
        if self._spec.has_cell_state:
            if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise TypeError(f"hx: expected a tuple (h0, c0) or None, got "
                                f"{type(hx).__name__}")
            h0, c0 = (None, None) if hx is None else hx
            h0 = _checks.check_state("hx[0] (h0)", h0, shape, self.dtype, what, dev)
            c0 = _checks.check_state("hx[1] (c0)", c0, shape, self.dtype, what, dev)
        else:
            h0 = _checks.check_state("hx", hx, shape, self.dtype, what, dev)
            c0 = None
        if unbatched:
            h0 = None if h0 is None else h0.reshape(LD, 1, H)
            c0 = None if c0 is None else c0.reshape(LD, 1, H)
        return x, h0, c0, lengths, unbatched

    def _present(self, out, h_n, c_n, unbatched):
        if unbatched:
            out, h_n = _drop_batch(out), _drop_batch(h_n)
            c_n = None if c_n is None else _drop_batch(c_n)
        elif self.batch_first:
            out = self._ops().swap01(out)
        return out, (h_n if c_n is None else (h_n, c_n))

    def _run(self, x, hx, lengths, training):
        x, h0, c0, lengths, unbatched = self._prepare(x, hx, lengths)
        be = self._backend(x)
        out, h_n, c_n, stack = stack_forward(self._spec, be, self._weights(), x, h0, c0, lengths,
                                             training=training, dropout=self.dropout,
                                             rng=self._rng)
        out, state = self._present(out, h_n, c_n, unbatched)
        return out, state, stack, unbatched, hx is not None

    def __call__(self, x, hx=None, lengths=None):
        """Inference: ``out, h_n`` (LSTM: ``out, (h_n, c_n)``); nothing is kept for backward.

        x: [T,B,I] ([B,T,I] with batch_first, or unbatched [T,I]); hx: [L*D,B,H] (LSTM: a pair)
        or None; lengths: [B] ints in 1..T or None. out: [T,B,D*H], zero past each length.
        Arrays on the parameters' side (see ``to``); results on the same side.
        """
        out, state, _, _, _ = self._run(x, hx, lengths, training=False)
        return out, state

    forward = __call__

    def forward_train(self, x, hx=None, lengths=None):
        """Like calling the module, plus a context for ``backward``; applies dropout."""
        out, state, stack, unbatched, hx_given = self._run(x, hx, lengths, training=True)
        ctx = _TrainContext(self, stack, unbatched, self.batch_first, hx_given)
        return out, state, ctx

    def backward(self, ctx, grad_output, grad_h_n=None, *, input_grad=True, state_grad=True):
        """Gradients of a loss given ``grad_output`` (and optionally ``grad_h_n``).

        Returns grad_x (shaped like x), grad_hx (LSTM: (grad_h0, grad_c0)) and a dict of
        parameter gradients with the state_dict's names and shapes, all on the parameters' side
        (device arrays after ``to("cuda")``). ``input_grad=False`` (x is data) or
        ``state_grad=False`` (hx is not trained through): that gradient is None, and the C
        kernels skip the work only it needs.
        """
        self._check_ctx(ctx)
        stack, dev = ctx.kept, ctx.on_device
        T, B, H = stack.shape
        D, LD = self.num_directions, self.num_layers * self.num_directions
        out_shape = (T, D * H) if ctx.unbatched else \
            ((B, T, D * H) if ctx.batch_first else (T, B, D * H))
        out_what = "[T,D*H]" if ctx.unbatched else ("[B,T,D*H]" if ctx.batch_first else "[T,B,D*H]")
        g_out = _checks.check_grad("grad_output", grad_output, out_shape, self.dtype, out_what,
                                   dev)
        if ctx.unbatched:
            g_out = g_out.reshape(T, 1, D * H)
        elif ctx.batch_first:
            g_out = stack.ops.swap01(g_out)
        state_shape = (LD, H) if ctx.unbatched else (LD, B, H)
        what = "[num_layers*num_directions,H]" if ctx.unbatched else \
            "[num_layers*num_directions,B,H]"
        g_h, g_c = None, None
        if self._spec.has_cell_state and grad_h_n is not None:
            if not isinstance(grad_h_n, (tuple, list)) or len(grad_h_n) != 2:
                raise TypeError("grad_h_n: expected a tuple (grad_h_n, grad_c_n) or None, got "
                                f"{type(grad_h_n).__name__}")
            g_h = _checks.check_state("grad_h_n[0]", grad_h_n[0], state_shape, self.dtype, what,
                                      dev)
            g_c = _checks.check_state("grad_h_n[1]", grad_h_n[1], state_shape, self.dtype, what,
                                      dev)
        elif grad_h_n is not None:
            g_h = _checks.check_state("grad_h_n", grad_h_n, state_shape, self.dtype, what, dev)
        if ctx.unbatched:
            g_h = None if g_h is None else g_h.reshape(LD, 1, H)
            g_c = None if g_c is None else g_c.reshape(LD, 1, H)
        asked, needs = _asked(input_grad, state_grad), None
        if asked is not None:  # stack_backward's needs: every weight's gradient
            needs = (asked[0], asked[1], asked[1], [[(True,) * 4] * D] * self.num_layers)
        dx, dh0, dc0, grads = stack_backward(stack, g_out, g_h, g_c, needs)
        if ctx.unbatched:
            dx, dh0, dc0 = (None if g is None else _drop_batch(g) for g in (dx, dh0, dc0))
        elif self.batch_first and dx is not None:
            dx = stack.ops.swap01(dx)
        named = {}
        for layer in range(self.num_layers):
            for direction, suffix in enumerate(("", "_reverse")[:D]):
                dw_ih, dw_hh, db_ih, db_hh = grads[layer][direction]
                named[f"weight_ih_l{layer}{suffix}"] = dw_ih
                named[f"weight_hh_l{layer}{suffix}"] = dw_hh
                if self.bias:
                    named[f"bias_ih_l{layer}{suffix}"] = db_ih
                    named[f"bias_hh_l{layer}{suffix}"] = db_hh
        return dx, (dh0 if dc0 is None or dh0 is None else (dh0, dc0)), named

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self._spec.flags)
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, num_layers="
                f"{self.num_layers}, bidirectional={self.bidirectional}, dtype="
                f"{self.dtype.name}{extra})")


class RNN(_Layer):
    """Elman RNN: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, act = tanh or relu."""

    _kind = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32,
                 backend="auto", seed=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, backend, seed, relu=nonlinearity == "relu")


class LSTM(_Layer):
    """LSTM with PyTorch's gate order i, f, g, o."""

    _kind = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, backend="auto", seed=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, backend, seed)


class GRU(_Layer):
    """GRU with gate order r, z, n; ``reset_after=False`` is Cho et al.'s / Keras's variant."""

    _kind = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, reset_after=True, dtype=np.float32,
                 backend="auto", seed=None):
        self.reset_after = _checks.check_bool("reset_after", reset_after)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, backend, seed, reset_after=self.reset_after)


class _Cell(_Recurrent):
    """One step of a cell: a one-layer, one-direction, T=1 run through the same kernels."""

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, backend="auto",
                 seed=None, **flags):
        self.input_size = _checks.check_size("input_size", input_size)
        self.hidden_size = _checks.check_size("hidden_size", hidden_size)
        self.bias = _checks.check_bool("bias", bias)
        self.dtype = _checks.check_dtype(dtype)
        self.backend = backend
        resolve(backend)
        self._spec = CellSpec(self._kind, tuple(sorted(flags.items())))
        G, H = self._spec.gates, self.hidden_size
        shapes = [("weight_ih", (G * H, self.input_size)), ("weight_hh", (G * H, H))]
        if self.bias:
            shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
        self._init_params(shapes, H, seed)

    def _weights(self):
        p = self._params
        return p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh")

    def _prepare(self, x, hx):
        dev = self._on_device
        arr = _checks.as_operand("x", x, self.dtype, dev)
        got = _checks.shape_of(arr)
        if len(got) not in (1, 2) or got[-1] != self.input_size or 0 in got:
            raise ValueError(f"x: expected [B,I] or unbatched [I] with I={self.input_size}, got "
                             f"shape {list(got)}")
        unbatched = len(got) == 1
        B, H = (1 if unbatched else got[0]), self.hidden_size
        shape, what = ((H,), "[H]") if unbatched else ((B, H), "[B,H]")
        if self._spec.has_cell_state:
            if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise TypeError(f"hx: expected a tuple (h, c) or None, got {type(hx).__name__}")
            h, c = (None, None) if hx is None else hx
            h = _checks.check_state("hx[0] (h)", h, shape, self.dtype, what, dev)
            c = _checks.check_state("hx[1] (c)", c, shape, self.dtype, what, dev)
        else:
            h, c = _checks.check_state("hx", hx, shape, self.dtype, what, dev), None
        h, c = (None if a is None else a.reshape(B, H) for a in (h, c))
        return arr.reshape(1, B, self.input_size), h, c, unbatched

    def _run(self, x, hx, training):
        x, h0, c0, unbatched = self._prepare(x, hx)
        be = self._backend(x)
        h, c, step = step_forward(self._spec, be, x, h0, c0, self._weights(), training)
        shape = (self.hidden_size,) if unbatched else h.shape
        state = h.reshape(shape) if c is None else (h.reshape(shape), c.reshape(shape))
        return state, (be, step), unbatched

    def __call__(self, x, hx=None):
        """One step: ``h'`` (LSTMCell: ``(h', c')``). x: [B,I] or [I]; hx: [B,H] (pair) or None.

        Arrays on the parameters' side (see ``to``); results on the same side.
        """
        return self._run(x, hx, training=False)[0]

    forward = __call__

    def forward_train(self, x, hx=None):
        """Like calling the cell, plus a context for ``backward``."""
        state, stack, unbatched = self._run(x, hx, training=True)
        return state, _TrainContext(self, stack, unbatched, False, hx is not None)

    def backward(self, ctx, grad_h, grad_c=None, *, input_grad=True, state_grad=True):
        """Gradients given ``grad_h`` of h' (and ``grad_c`` of c' for LSTMCell).

        Returns grad_x, grad_hx (LSTMCell: (grad_h, grad_c)), dict of parameter gradients;
        ``input_grad=False`` or ``state_grad=False``: that one is None and not computed, as
        the layers' ``backward``.
        """
        self._check_ctx(ctx)
        be, step = ctx.kept
        B, H = step[0].shape[1], self.hidden_size  # step[0]: x [1,B,I]
        shape, what = ((H,), "[H]") if ctx.unbatched else ((B, H), "[B,H]")
        g_h = _checks.check_grad("grad_h", grad_h, shape, self.dtype, what, ctx.on_device)
        g_c = None
        if self._spec.has_cell_state:
            g_c = _checks.check_state("grad_c", grad_c, shape, self.dtype, what, ctx.on_device)
            g_c = None if g_c is None else g_c.reshape(B, H)
        elif grad_c is not None:
            raise TypeError(f"grad_c: {type(self).__name__} has no cell state; pass only grad_h")
        asked, wanted = _asked(input_grad, state_grad), None
        if asked is not None:  # the backends' order: dx, the states', the four weights'
            states = 2 if self._spec.has_cell_state else 1
            wanted = (asked[0], *(asked[1],) * states, *(True,) * 4)
        dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh = step_backward(self._spec, be, step,
                                                                 g_h.reshape(B, H), g_c, wanted)
        named = {"weight_ih": dw_ih, "weight_hh": dw_hh}
        if self.bias:
            named.update(bias_ih=db_ih, bias_hh=db_hh)
        if dx is not None:
            dx = dx.reshape((self.input_size,) if ctx.unbatched else (B, self.input_size))
        if dh0 is None:
            return dx, None, named
        dh0 = dh0.reshape(shape)
        return dx, (dh0 if dc0 is None else (dh0, dc0.reshape(shape))), named


class RNNCell(_Cell):
    _kind = "rnn"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh",
                 dtype=np.float32, backend="auto", seed=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, dtype, backend, seed,
                         relu=nonlinearity == "relu")


class LSTMCell(_Cell):
    _kind = "lstm"

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, backend="auto",
                 seed=None):
        super().__init__(input_size, hidden_size, bias, dtype, backend, seed)


class GRUCell(_Cell):
    _kind = "gru"

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True, dtype=np.float32,
                 backend="auto", seed=None):
        self.reset_after = _checks.check_bool("reset_after", reset_after)
        super().__init__(input_size, hidden_size, bias, dtype, backend, seed,
                         reset_after=self.reset_after)
