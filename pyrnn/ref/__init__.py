"""The NumPy reference: the fallback backend and the oracle every other backend is tested against.

It mirrors ``csrc/`` file for file and name for name (without the ``pyrnn_`` prefix and the
dtype suffix), with the same parameter order. Each ``<cell>_forward`` / ``<cell>_backward`` runs
one layer x one direction x T steps.
"""

from .gru import gru_backward, gru_forward, gru_workspace_len
from .lstm import lstm_backward, lstm_forward, lstm_workspace_len
from .rnn import rnn_backward, rnn_forward, rnn_workspace_len

__all__ = [
    "rnn_forward", "rnn_backward", "rnn_workspace_len",
    "lstm_forward", "lstm_backward", "lstm_workspace_len",
    "gru_forward", "gru_backward", "gru_workspace_len",
]
