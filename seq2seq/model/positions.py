"""Where a word is: the position information self-attention lacks on its own.

Self-attention compares every word with every other in one step and sums what it finds, so
without positions it sees a bag of words: 我爱你 and 你爱我 give the same annotations, in a
different order. These schemes give it order:

- ``sinusoidal`` (Vaswani et al. 2017, sec. 3.5): PE(p, 2i) = sin(p / 10000^{2i/d}),
  PE(p, 2i+1) = cos(p / 10000^{2i/d}), added to the embeddings; fixed, any length.
- ``learned`` (Gehring et al. 2017): one trained vector per absolute position, added to the
  embeddings; only up to the longest position trained.
- ``rotary`` (Su et al. 2021, RoFormer eq. 34): queries and keys of every layer are rotated by
  an angle proportional to their position, so q_mᵀ k_n depends on the positions only through
  the distance m − n. Relative distance is what the explainer says attention lacks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

POSITIONS = ("none", "sinusoidal", "learned", "rotary")


def sinusoids(length: int, size: int, base: float = 10000.0) -> torch.Tensor:
    """(length, size) table of Vaswani et al.'s sines and cosines (size even)."""
    assert size % 2 == 0, f"sinusoidal positions need an even size, got {size}"
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (length, 1)
    frequency = torch.exp(torch.arange(0, size, 2, dtype=torch.float32) * (-math.log(base) / size))
    table = torch.zeros(length, size)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class AbsolutePositions(nn.Module):
    """Adds a position vector to each embedding: sinusoidal (fixed) or learned."""

    def __init__(
        self,
        kind: str,
        size: int,
        max_positions: int,
        setting: str,
    ) -> None:
        """``setting``: the config key of ``max_positions``, for the error on a longer input."""
        super().__init__()
        assert kind in ("sinusoidal", "learned"), f"not an absolute scheme: {kind!r}"
        self.max_positions, self.setting = max_positions, setting
        self.learned = kind == "learned"
        if self.learned:
            self.table = nn.Embedding(max_positions, size)
        else:  # a buffer, not a parameter: fixed, and rebuilt rather than stored in checkpoints
            self.register_buffer("sinusoids", sinusoids(max_positions, size), persistent=False)

    def forward(self, embedded: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``embedded``: (batch, length, size), the words at positions offset, offset + 1, ..."""
        end = offset + embedded.size(1)
        if end > self.max_positions:
            raise ValueError(
                f"a sequence of {end} tokens is longer than {self.setting}={self.max_positions}; "
                "raise it (or lower data.max_length)"
            )
        table = self.table.weight[offset:end] if self.learned else self.sinusoids[offset:end]
        return embedded + table.to(embedded.dtype)


class RotaryPositions(nn.Module):
    """Rotates each pair of query/key features (2i, 2i+1) by the angle p·θ_i, θ_i = 10000^{-2i/d}.

    A rotation by m·θ of q and by n·θ of k leaves q·k depending on (m − n)·θ alone, so the
    scores see relative distance and nothing is added to the values.
    """

    def __init__(self, head_size: int, base: float = 10000.0) -> None:
        super().__init__()
        assert head_size % 2 == 0, f"rotary positions need an even head size, got {head_size}"
        inverse = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
        self.register_buffer("inverse_frequency", inverse, persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``x``: (batch, heads, length, head_size) at positions offset, offset + 1, ..."""
        length = x.size(2)
        position = torch.arange(offset, offset + length, device=x.device, dtype=torch.float32)
        angle = torch.outer(position, self.inverse_frequency)  # (length, head_size/2)
        cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
        even, odd = x[..., 0::2], x[..., 1::2]
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
        return rotated.flatten(-2)


def stack_positions(
    kind: str, size: int, heads: int, max_positions: int, setting: str
) -> tuple[AbsolutePositions | None, RotaryPositions | None]:
    """A Transformer stack's positions: what is added to its embeddings (sinusoidal, learned)
    and what rotates every layer's queries and keys (rotary); at most one is not None.

    ``setting`` is the stack's config prefix (``model.encoder.self_attention``), for errors.
    """
    if kind not in POSITIONS:
        raise ValueError(f"{setting}.positions must be one of {POSITIONS}, got {kind!r}")
    if size % heads or (size // heads) % 2:
        raise ValueError(
            f"model.embed_size ({size}) must split into {setting}.heads ({heads}) heads of "
            "even size"
        )
    absolute = (
        AbsolutePositions(kind, size, max_positions, f"{setting}.max_positions")
        if kind in ("sinusoidal", "learned")
        else None
    )
    return absolute, RotaryPositions(size // heads) if kind == "rotary" else None
