"""PyTorch drop-ins for torch.nn.RNN, LSTM, GRU and their cells, running pyrnn's kernels.

Change one import (``from pyrnn.torch import LSTM``) or convert a whole model in place
(``pyrnn.torch.convert(model)``). Importing ``pyrnn`` alone never imports torch.
"""

from .modules import GRU, LSTM, RNN, FallbackWarning, GRUCell, LSTMCell, RNNCell, convert

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "convert", "FallbackWarning"]
