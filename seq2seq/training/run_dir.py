"""One run per directory: a new run never replaces or mixes with the results of another."""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from seq2seq.files import remove_orphaned_temporaries_in

log = logging.getLogger(__name__)

# What the trainer writes into a run directory (Hydra's .hydra/ and train.log aside, which Hydra
# writes before the run starts): any of these means the directory holds a run.
RUN_OUTPUTS = ("checkpoints", "spm", "alignments", "metrics.json")


def previous_outputs(run_dir: Path) -> list[Path]:
    """The outputs of an earlier run in ``run_dir``, TensorBoard event files included."""
    outputs = [run_dir / name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    return outputs + sorted(run_dir.glob("events.out.tfevents.*"))


def resumes_in_place(run_dir: Path, resume: str | None) -> bool:
    """``trainer.resume`` names this directory's own ``checkpoints/last.pt``."""
    if not resume:
        return False
    return Path(resume).expanduser().resolve().parent.parent == run_dir.resolve()


def refuse_another_run(run_dir: Path, t: DictConfig) -> list[Path]:
    """Raise ValueError if ``run_dir`` holds another run that this one neither continues
    (``trainer.resume`` of its own last.pt) nor starts over (``trainer.overwrite``); else
    return the earlier outputs that starting over removes."""
    outputs = previous_outputs(run_dir)
    if not outputs or resumes_in_place(run_dir, t.resume):
        return []
    if not t.overwrite:
        names = ", ".join(path.name for path in outputs[:4])
        last = run_dir / "checkpoints" / "last.pt"
        resume = f"continue it with trainer.resume={last}, " if last.is_file() else ""
        raise ValueError(
            f"{run_dir} already holds a run ({names}{', …' if len(outputs) > 4 else ''}): "
            f"{resume}start over there with trainer.overwrite=true, or choose another "
            f"hydra.run.dir"
        )
    return outputs


def claim_run_dir(run_dir: Path, t: DictConfig, is_main: bool = True) -> None:
    """Refuse a directory that holds another run (see :func:`refuse_another_run`), or empty it
    of that run's outputs where ``trainer.overwrite`` says so; then remove the temporary files
    of killed writers from this run's folders and from the folder it resumes from.

    Checked before anything is written. Only the main process removes files.
    """
    outputs = refuse_another_run(run_dir, t)
    if not is_main:
        return
    if outputs:
        log.warning("trainer.overwrite=true: removing the earlier run's outputs in %s", run_dir)
    for path in outputs:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for folder in (run_dir / "checkpoints", run_dir / "spm"):
        remove_orphaned_temporaries_in(folder)
    if t.resume:
        remove_orphaned_temporaries_in(Path(t.resume).expanduser().parent)


def check_writable(directory: Path, setting: str) -> None:
    """Raise ValueError unless ``directory`` exists or can be made, and a file can be written
    in it; Hydra would fail there setting up its log file, with a 30-line traceback."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise ValueError(
            f"{directory}: cannot write a run there ({error.strerror or error}); "
            f"choose another {setting}"
        ) from error


class RunDirectoryCallback(Callback):
    """Hydra callback (``hydra.callbacks`` in configs/config.yaml): refuses a run directory that
    holds another run before Hydra rewrites its ``.hydra/`` and appends to its ``train.log``,
    and a run or sweep directory that cannot be written, before Hydra's logging fails there.

    :func:`claim_run_dir` checks again inside the task, for sweep jobs and direct callers.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(config.hydra.run.dir)
        try:
            refuse_another_run(run_dir, config.trainer)
            check_writable(run_dir, "hydra.run.dir")
        except ValueError as error:
            exit_with(error)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_writable(Path(config.hydra.sweep.dir), "hydra.sweep.dir")
        except ValueError as error:
            exit_with(error)


def exit_with(error: ValueError) -> None:
    """One line and exit status 2, as train.py ends on any user error."""
    print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
    sys.exit(2)
