"""An exponential moving average (EMA) of the weights, for validation, best.pt and test.

Late in a short run Adam's updates are still large and noisy; the average of the recent weights
sits nearer the centre of the region they wander in and translates better than any one of them
(Polyak & Juditsky 1992; the "EMA" of many recent NMT and vision recipes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class WeightAverage:
    """``average ← d_n · average + (1 − d_n) · weights`` after every applied update.

    d_n = min(decay, (1 + n) / (10 + n)) for the n-th update (n = 0, 1, ...): the warm-up lets
    the average forget the initial weights quickly, so early validations do not score a model
    still stuck near its initialisation; after about 10 / (1 − decay) updates d_n = ``decay``.

    Every rank of a data-parallel run holds identical weights and so keeps an identical average;
    only rank 0 writes it. ``state_dict`` goes into ``last.pt`` so a resumed run averages on
    exactly as the uninterrupted one would.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"trainer.ema_decay must be in (0, 1) (0 turns it off), got {decay}")
        self.decay = decay
        self.updates = 0
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self.parameters]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average toward the current weights (call after each applied update)."""
        torch._foreach_lerp_(self.average, self.parameters, 1.0 - self.current_decay())
        self.updates += 1

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own weights after it."""
        with torch.no_grad():
            own = [p.detach().clone() for p in self.parameters]
            torch._foreach_copy_(self.parameters, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.parameters, own)

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "updates": self.updates,
            "average": dict(zip(self.names, self.average, strict=True)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert state["decay"] == self.decay, "resume checks trainer.ema_decay against the config"
        self.updates = state["updates"]
        with torch.no_grad():
            for name, tensor in zip(self.names, self.average, strict=True):
                tensor.copy_(state["average"][name])
