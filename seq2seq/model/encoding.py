"""What every encoder hands the decoder: the annotations h_j, a summary C and the source mask.

Its own module so that attention (which reads it) and the encoders (which use attention's
maths) do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EncoderOutput:
    states: torch.Tensor  # (batch, src_len, directions*hidden) annotations h_j, zero on padding
    summary: torch.Tensor  # (batch, output) C: RNN's final top-layer states, or mean of h_j
    mask: torch.Tensor  # (batch, src_len) True on real source tokens
    # (batch, src_len) the source piece ids: the TF-IDF scorer weighs the words themselves
    tokens: torch.Tensor | None = None

    def select(self, index: torch.Tensor) -> EncoderOutput:
        """Rows ``index`` of the batch (beam search expands and reorders with this)."""
        tokens = None if self.tokens is None else self.tokens[index]
        return EncoderOutput(self.states[index], self.summary[index], self.mask[index], tokens)
