"""One training update — batch → loss → gradients → clip → Adam — shared by the trainer and
``scripts/benchmark_training.py``, so the benchmark measures exactly what ``train.py`` runs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import clip_grads_with_norm_

from seq2seq.config.schema import LOSS_NORMALIZATIONS
from seq2seq.data.batching import Batch
from seq2seq.device import autocast, autocast_dtype
from seq2seq.metrics.loss import sequence_loss
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.training.ema import WeightAverage


@dataclass
class UpdateResult:
    """Under data parallelism the sums cover the global batch, every rank's share."""

    loss_sum: float  # summed token cross-entropy of the batch (what the logs average)
    target_tokens: int
    grad_norm: float  # before clipping
    applied: bool  # False: the loss or the gradient was not finite and the weights were kept


def build_optimizer(model: Seq2Seq, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel: one pass over all parameters instead of ~10 ops per tensor."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


def gradient_norm(grads: list[torch.Tensor]) -> float:
    """The L2 norm of all gradients together, from one BLAS dot product per tensor: on CPU about
    1.7× as fast as ``torch.nn.utils.get_total_norm``'s per-tensor norms (which also sum the
    squares in float32, so both overflow to inf for gradients beyond ~1e19)."""
    squares = torch.stack([torch.dot(grad.reshape(-1), grad.reshape(-1)) for grad in grads])
    return float(squares.sum().sqrt())


class TrainingStep:
    """Teacher-forced loss, backward, gradient clipping and the optimizer step for one batch.

    ``normalization`` divides the summed loss by the batch's target tokens (a per-token mean)
    or by its sentences (as OpenNMT-py does by default). Adam is nearly blind to the scale of
    the loss, but clipping is not: per sentence, the gradient norm is about the mean target
    length times larger, so ``clip_norm`` actually bounds the early, large updates.

    An update whose loss or gradient norm is not finite is skipped, so one bad batch cannot
    write NaN into the weights; the caller counts and reports skips. ``average`` (the weight
    average, ``trainer.ema_decay``) follows every applied update.

    With ``model`` wrapped in DistributedDataParallel, each rank gets its share of a global
    batch. One all-reduce of (loss, tokens, sentences) gives every rank the global denominator,
    and each rank's loss is scaled by the number of ranks to undo DDP's gradient averaging: the
    update is the one a single process would make on the whole global batch.
    """

    def __init__(
        self,
        model: Seq2Seq | DistributedDataParallel,
        optimizer: torch.optim.Optimizer,
        clip_norm: float,
        label_smoothing: float,
        normalization: str,
        precision: str = "fp32",
        average: WeightAverage | None = None,
    ) -> None:
        if normalization not in LOSS_NORMALIZATIONS:
            raise ValueError(
                f"trainer.normalization must be one of {LOSS_NORMALIZATIONS}, got {normalization!r}"
            )
        self.model = model
        self.optimizer = optimizer
        self.clip_norm = clip_norm
        self.label_smoothing = label_smoothing
        self.normalization = normalization
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.device = self.parameters[0].device
        self.precision = precision
        self.average = average
        self.world_size = dist.get_world_size() if isinstance(model, DistributedDataParallel) else 1
        autocast_dtype(precision)  # fails early on an unknown value
        # fp16 gradients underflow without loss scaling; bf16 has float32's range.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")

    def __call__(self, batch: Batch) -> UpdateResult:
        self.model.train()
        with autocast(self.device, self.precision):
            logits, _ = self.model(batch)
        loss_sum = sequence_loss(logits, batch.tgt_out, self.label_smoothing)
        loss, tokens, sentences = float(loss_sum.detach()), batch.target_tokens, batch.src.size(0)
        if self.world_size > 1:
            totals = torch.tensor(
                [loss, tokens, sentences], dtype=torch.float64, device=self.device
            )
            dist.all_reduce(totals)
            loss, tokens, sentences = totals[0].item(), int(totals[1]), int(totals[2])
        denominator = tokens if self.normalization == "tokens" else sentences
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss_sum * self.world_size / denominator).backward()
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.parameters if p.grad is not None]
        grad_norm = gradient_norm(grads)
        applied = math.isfinite(grad_norm) and math.isfinite(loss)
        if applied:
            if 0 < self.clip_norm < grad_norm:
                clip_grads_with_norm_(
                    self.parameters, self.clip_norm, torch.tensor(grad_norm), foreach=True
                )
            self.scaler.step(self.optimizer)
            if self.average:
                self.average.update()
        self.scaler.update()
        return UpdateResult(loss, tokens, grad_norm, applied)
