"""The feed-forward block of every self-attention encoder layer and Transformer decoder layer."""

from __future__ import annotations

from torch import nn


def feed_forward(size: int, ff_size: int, activation_dropout: float) -> nn.Sequential:
    """Vaswani et al.'s position-wise block, W_2 ReLU(W_1 x), applied to every position alike."""
    return nn.Sequential(
        nn.Linear(size, ff_size),
        nn.ReLU(),
        nn.Dropout(activation_dropout),
        nn.Linear(ff_size, size),
    )
