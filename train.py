"""Train a translator: ``python train.py [group=option ...] [key=value ...]`` (Hydra)."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from seq2seq.checkpoint import CheckpointError
from seq2seq.config import PROJECT_ROOT, register_configs
from seq2seq.training.signals import TrainingInterrupted
from seq2seq.training.trainer import train

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> float:
    """Hydra task: returns the best dev BLEU so sweepers can optimise it."""
    try:
        best_bleu = train(cfg, Path(HydraConfig.get().runtime.output_dir))
        logging.getLogger("train").info("%s", tensorboard_hint())
        return best_bleu
    except TrainingInterrupted as interrupted:
        logging.getLogger("train").warning("%s", interrupted)
        sys.exit(interrupted.exit_code)
    except (ValueError, CheckpointError) as error:  # bad data, config value or checkpoint
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        logging.getLogger("train").error("%s", error)
        print(f"train.py: error: {error} (HYDRA_FULL_ERROR=1 shows the trace)", file=sys.stderr)
        sys.exit(2)


def tensorboard_hint() -> str:
    """The command that shows this run: its directory, or the sweep's for -m (runs side by side)."""
    hydra_cfg = HydraConfig.get()
    logdir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        logdir = Path(hydra_cfg.sweep.dir).absolute()
    quoted = shlex.quote(str(logdir))
    return (
        f"TensorBoard logs are in {logdir}. See them with `make tensorboard LOGDIR={quoted}` "
        f"in {PROJECT_ROOT} or `{shlex.quote(sys.executable)} -m tensorboard.main --logdir "
        f"{quoted}`, then open http://localhost:6006"
    )


if __name__ == "__main__":
    main()
