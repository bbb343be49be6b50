"""``train.py -m``: a job stopped by a user error does not end the sweep; the sweep's exit
status and last lines say which jobs failed."""

from __future__ import annotations

import math
import sys
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class FailedJob(float):
    """What a sweep job stopped by a user error returns: NaN to a sweeper that optimises the
    returned dev BLEU, and the one-line error to :class:`SweepSummary`."""

    error: str

    def __new__(cls, error: str) -> FailedJob:
        job = super().__new__(cls, math.nan)
        job.error = error
        return job


class SweepSummary(Callback):
    """Hydra callback (``hydra.callbacks`` in configs/config.yaml): after the last job of a
    sweep, lists the jobs that failed and exits with status 2 if there are any.

    It sees the jobs that run in this process (Hydra's basic launcher); a cluster launcher's
    jobs report in their own logs.
    """

    def __init__(self) -> None:
        self.failed: list[str] = []

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status is JobStatus.COMPLETED and isinstance(
            job_return.return_value, FailedJob
        ):
            directory = job_return.hydra_cfg.hydra.runtime.output_dir
            self.failed.append(f"{directory}: {job_return.return_value.error}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.failed:
            return
        listed = "".join(f"\n  {failure}" for failure in self.failed)
        print(
            f"train.py: error: {len(self.failed)} job(s) of the sweep failed:{listed}",
            file=sys.stderr,
        )
        sys.exit(2)
