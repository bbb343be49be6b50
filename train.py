"""Train a translator: ``python train.py [group=option ...] [key=value ...]`` (Hydra)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from seq2seq.checkpoint import CheckpointError
from seq2seq.config.schema import register_configs
from seq2seq.config.validation import unread_overrides
from seq2seq.device import keep_freed_memory
from seq2seq.training.distributed import leave_process_group
from seq2seq.training.reporting import tensorboard_hint
from seq2seq.training.signals import TrainingInterrupted
from seq2seq.training.sweeps import FailedJob
from seq2seq.training.trainer import train

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> float:
    """Hydra task: returns the best dev BLEU so sweepers can optimise it."""
    keep_freed_memory()  # process-wide: set by the entry points, never by the package
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    for unread in unread_overrides(cfg, list(hydra_cfg.overrides.task)):
        logging.getLogger("train").warning("%s", unread)
    try:
        best_bleu = train(cfg, run_dir)
    except TrainingInterrupted as interrupted:
        logging.getLogger("train").warning("%s", interrupted)
        leave_process_group()  # every rank stopped after the same update and comes here
        sys.exit(interrupted.exit_code)
    except (ValueError, CheckpointError) as error:  # bad data, config value or checkpoint
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        logging.getLogger("train").error("%s", error)
        print(f"train.py: error: {error} (HYDRA_FULL_ERROR=1 shows the trace)", file=sys.stderr)
        if multirun:  # the other jobs run; SweepSummary lists the failed ones and exits 2
            return FailedJob(str(error))
        sys.exit(2)
    # -m: the whole sweep, so its runs show side by side.
    logging.getLogger("train").info(
        "%s", tensorboard_hint(Path(hydra_cfg.sweep.dir).absolute() if multirun else run_dir)
    )
    return best_bleu


if __name__ == "__main__":
    main()
