"""Data-parallel training under ``torchrun``: PyTorch's DistributedDataParallel, one process per
rank (a share of the CPU cores with gloo, or one GPU each with NCCL).

Every rank holds the whole model, trains on its share of each global batch, and DDP averages
the gradients during backward, so the weights stay identical on all ranks. What is not
computed from the batch — validation, checkpoints, TensorBoard, the decision to stop — is done
or decided once and shared, so no rank waits in a collective that another never enters.

Launched plainly (``python train.py``, no ``WORLD_SIZE`` in the environment) nothing here
changes anything: :func:`current_ranks` is rank 0 of 1 and every helper returns its input.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write
from torch.nn.parallel import DistributedDataParallel

from seq2seq.device import select_device

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: rank ``rank`` of ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run directory (TensorBoard, checkpoints, logs) and validates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """torchrun (or any launcher with its environment) started more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current_ranks() -> Ranks:
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def init_process_group(device_name: str, timeout_minutes: float) -> None:
    """Join the torchrun job: gloo for CPU ranks, NCCL with GPU ``LOCAL_RANK`` on CUDA.

    ``timeout_minutes`` bounds every collective: a rank whose peers died or hang fails after
    that long instead of waiting forever (torchrun also stops the others when one exits).
    """
    device = select_device(device_name)
    if device.type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"torchrun started local rank {local_rank}, but torch sees "
                f"{torch.cuda.device_count()} GPU(s): one GPU per rank, so lower --nproc_per_node"
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=timeout_minutes)
    )
    log.info(
        "rank %d of %d (%s backend)", dist.get_rank(), dist.get_world_size(), dist.get_backend()
    )


def training_device(device_name: str, ranks: Ranks) -> torch.device:
    """The device this rank trains on: its own GPU under torchrun, else ``trainer.device``."""
    device = select_device(device_name)
    if device.type == "cuda" and ranks.distributed:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def data_parallel(model: torch.nn.Module, ranks: Ranks) -> torch.nn.Module:
    """The module the training update runs: DDP-wrapped under torchrun, else ``model`` itself.

    Validation and decoding use the bare model, on rank 0 only, so they enter no collective.
    """
    if not ranks.distributed:
        return model
    return DistributedDataParallel(model)


def broadcast_from_main(value: T, ranks: Ranks) -> T:
    """Rank 0's ``value`` on every rank (a picklable object)."""
    if not ranks.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_from_all(value: T, ranks: Ranks) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not ranks.distributed:
        return [value]
    values: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(values, value)
    return values


def max_over_ranks(values: Sequence[float], ranks: Ranks, device: torch.device) -> list[float]:
    """Element-wise maximum of ``values`` over all ranks: one decision that every rank obeys."""
    if not ranks.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


@contextmanager
def main_first(ranks: Ranks) -> Iterator[None]:
    """Rank 0 runs the body before the others (e.g. to fill a cache they then read)."""
    if not ranks.is_main:
        dist.barrier()
    yield
    if ranks.is_main and ranks.distributed:
        dist.barrier()


def leave_process_group() -> None:
    """Every rank, at the end of a run (finished or stopped by a signal): leave together.

    A rank that exits with its gloo process group alive, or tears it down while rank 0 still
    tests and writes the run, can abort (SIGABRT, "terminate called without an active
    exception") as the other side closes its connections. No-op outside torchrun.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def assert_same_weights(model: torch.nn.Module, ranks: Ranks) -> None:
    """Invariant of data parallelism: every rank holds exactly the same weights."""
    if not ranks.distributed:
        return
    fingerprint = torch.stack([p.detach().double().sum() for p in model.parameters()]).cpu()
    fingerprints = gather_from_all(fingerprint, ranks)
    differing = [r for r, f in enumerate(fingerprints) if not torch.equal(f, fingerprints[0])]
    assert not differing, f"the weights of ranks {differing} differ from rank 0's"


# Ranks other than 0 log warnings and errors to the console only: rank 0 writes train.log.
_OTHER_RANKS_LOGGING = {
    "version": 1,
    "formatters": {"simple": {"format": "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "simple",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"level": "WARNING", "handlers": ["console"]},
    "disable_existing_loggers": False,
}


class TorchrunCallback(Callback):
    """Hydra callback (``hydra.callbacks`` in configs/config.yaml) that prepares a torchrun rank.

    Before Hydra creates the run directory it joins the process group and takes rank 0's
    ``hydra.run.dir``: each rank resolves ``${now:...}`` from its own clock, and a second
    boundary between them would split the run. Ranks other than 0 write no ``.hydra/`` and no
    ``train.log``. Without torchrun it does nothing.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not launched_by_torchrun():
            return
        init_process_group(config.trainer.device, config.trainer.ddp_timeout_minutes)
        ranks = current_ranks()
        run_dir = broadcast_from_main(str(config.hydra.run.dir), ranks)
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.run.dir = run_dir
            if not ranks.is_main:
                config.hydra.output_subdir = None
                config.hydra.job_logging = _OTHER_RANKS_LOGGING

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        leave_process_group()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if launched_by_torchrun():
            raise ValueError(
                "torchrun trains one run with all its processes; sweep with `python train.py "
                "-m ...` (hydra/launcher=submitit_slurm on a cluster), without torchrun"
            )
