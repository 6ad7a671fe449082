"""pyrnn: fused RNN, LSTM and GRU kernels for Python, with PyTorch-compatible weights."""

from ._backend import available_backends, backend_info, set_num_threads
from ._errors import BackendUnavailableError, PyrnnError
from .modules import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__version__ = "0.1.0"

__all__ = [
    "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell",
    "available_backends", "backend_info", "set_num_threads",
    "PyrnnError", "BackendUnavailableError", "__version__",
]
