"""The learning rate over training: cut on a dev BLEU plateau, or a function of the update count.

``plateau`` (the default) halves the rate after ``lr_patience`` validations without a dev BLEU
gain. ``linear`` and ``cosine`` warm up linearly over ``warmup_steps`` updates to ``lr`` and then
anneal to ``min_lr`` at update ``lr_decay_steps``, staying there after it: small steps at the
end of a fixed budget let the weights settle instead of wandering at the peak rate.
``inverse_sqrt`` (Vaswani et al. 2017, eq. 3, as fairseq writes it) warms up the same way and
then falls as lr · √(warmup_steps / step): a Transformer's attention needs the warm-up, and the
rate keeps falling however long the run goes (no ``lr_decay_steps`` to guess). Being a
function of the update count alone, the same config and seed give the same rates on any machine,
and a resumed run continues them exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from omegaconf import DictConfig

from seq2seq.config.schema import LR_SCHEDULES


def step_lr(
    step: int, peak: float, floor: float, warmup_steps: int, decay_steps: int, shape: str
) -> float:
    """The learning rate of update ``step`` (1 for the first update)."""
    if step <= warmup_steps:
        return peak * step / warmup_steps
    if shape == "inverse_sqrt":
        return peak * math.sqrt(warmup_steps / step)
    progress = min(1.0, (step - warmup_steps) / (decay_steps - warmup_steps))
    remaining = 1.0 - progress if shape == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return floor + (peak - floor) * remaining


class LearningRateSchedule:
    """Sets the optimizer's rate before each update and after each validation."""

    def __init__(self, optimizer: torch.optim.Optimizer, t: DictConfig) -> None:
        if t.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"trainer.lr_schedule must be one of {LR_SCHEDULES}, got {t.lr_schedule!r}"
            )
        self.optimizer = optimizer
        self.shape = t.lr_schedule
        self.peak, self.floor = t.lr, t.min_lr
        self.warmup_steps, self.decay_steps = t.warmup_steps, t.lr_decay_steps
        self.plateau = None
        if self.shape == "plateau":
            if t.warmup_steps or t.lr_decay_steps:
                raise ValueError(
                    "trainer.warmup_steps and trainer.lr_decay_steps need "
                    "trainer.lr_schedule=linear, cosine or inverse_sqrt (plateau cuts the rate "
                    "on dev BLEU)"
                )
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=t.lr_factor, patience=t.lr_patience, min_lr=t.min_lr
            )
        elif self.shape == "inverse_sqrt":
            if t.warmup_steps < 1 or t.lr_decay_steps:
                raise ValueError(
                    "trainer.lr_schedule=inverse_sqrt needs trainer.warmup_steps >= 1 (the rate "
                    f"peaks there) and no trainer.lr_decay_steps (got {t.warmup_steps} and "
                    f"{t.lr_decay_steps}): it falls as 1/sqrt(update) for as long as the run goes"
                )
        elif not 0 <= t.warmup_steps < t.lr_decay_steps:
            raise ValueError(
                f"trainer.lr_schedule={self.shape} needs 0 <= trainer.warmup_steps < "
                f"trainer.lr_decay_steps (got {t.warmup_steps} and {t.lr_decay_steps}); set "
                "lr_decay_steps near the number of updates the run will make"
            )

    def before_update(self, step: int) -> None:
        """Set the rate of update ``step`` (1 for the first)."""
        if self.plateau is None:
            lr = step_lr(
                step, self.peak, self.floor, self.warmup_steps, self.decay_steps, self.shape
            )
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def after_validation(self, bleu: float) -> None:
        if self.plateau is not None:
            self.plateau.step(bleu)

    def state_dict(self) -> dict[str, Any]:
        return self.plateau.state_dict() if self.plateau is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.plateau is not None:
            self.plateau.load_state_dict(state)
