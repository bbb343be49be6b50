"""The training loop: teacher forcing, Adam, clipping, validation, checkpoints, final test."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from seq2seq.checkpoint import (
    CheckpointError,
    check_finite_weights,
    keep_validation_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
)
from seq2seq.config.saved import resumed_config
from seq2seq.config.schema import config_to_dict
from seq2seq.config.validation import check_settings
from seq2seq.data.batching import Batch, BucketBatchSampler
from seq2seq.data.dataset import TokenizedSplit, TrainingData, load_training_data
from seq2seq.data.subword_sampling import SubwordSampler
from seq2seq.data.tokenizer import SubwordTokenizer
from seq2seq.device import PrecisionChoice, choose_precision, hardware_summary
from seq2seq.evaluation import EvalResult, evaluate
from seq2seq.fast.kernels import accelerate
from seq2seq.files import atomic_write_bytes
from seq2seq.model.attention import fit_source_idf
from seq2seq.model.seq2seq import Seq2Seq, build_model
from seq2seq.provenance import code_commit, code_record
from seq2seq.search import SearchSettings
from seq2seq.training.distributed import (
    Ranks,
    assert_same_weights,
    broadcast_from_main,
    current_ranks,
    data_parallel,
    gather_from_all,
    main_first,
    max_over_ranks,
    training_device,
)
from seq2seq.training.ema import WeightAverage
from seq2seq.training.reporting import Reporter
from seq2seq.training.resume import (
    TrainingProgress,
    carry_checkpoints,
    check_resumable,
    restore_training_state,
)
from seq2seq.training.run_dir import claim_run_dir
from seq2seq.training.schedule import LearningRateSchedule
from seq2seq.training.signals import SignalReceived, StopRequests, TrainingInterrupted
from seq2seq.training.step import TrainingStep, build_optimizer

log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_dir: Path) -> float:
    """Train as configured, writing everything under ``run_dir``; returns the best dev BLEU.

    Under torchrun every rank runs this (see seq2seq/training/distributed.py); rank 0 alone
    writes ``run_dir``, validates and scores the test splits.
    """
    return Trainer(cfg, run_dir).run()


@dataclass
class LossWindow:
    """The applied updates' summed loss and target tokens since the last report, for the
    logged training loss per token and tokens/s (validation time excluded: a new window)."""

    loss_sum: float = 0.0
    tokens: int = 0
    start: float = field(default_factory=time.monotonic)

    def loss(self) -> float:
        return self.loss_sum / max(self.tokens, 1)

    def tokens_per_sec(self) -> float:
        return self.tokens / (time.monotonic() - self.start)


class Trainer:
    """One run: data, model, update, schedule and sampler built from the config (or restored
    from ``trainer.resume``), then :meth:`run`'s loop, validations, checkpoints and final test."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        check_settings(cfg)
        self.commit = code_commit()  # the code this run starts with, for metrics.json
        self.cfg, self.t, self.run_dir = cfg, cfg.trainer, run_dir
        self.checkpoints = run_dir / "checkpoints"
        t = self.t
        self.ranks = current_ranks()
        claim_run_dir(run_dir, t, self.ranks.is_main)
        random.seed(t.seed)
        torch.manual_seed(t.seed)
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        self.device = training_device(t.device, self.ranks)
        self.precision = choose_precision(t.precision, self.device)
        log.info("precision: %s", self.precision)
        saved = load_resume_checkpoint(cfg) if t.resume else None
        if saved is not None:
            warn_on_precision_change(t.resume, saved, self.precision)
        self.data = self.prepare_data(saved)
        self.build_model_and_update()
        self.progress = TrainingProgress()
        self.stop_reason: str | None = None  # set on resume when only the final test is left
        self.already_finished = saved is not None and self.resume(saved)
        self.resumed_into_test = self.stop_reason is not None
        self.reporter: Reporter | None = None
        self.signum = 0

    def prepare_data(self, saved: dict[str, Any] | None) -> TrainingData:
        """The corpus and sentencepiece models (rank 0 trains them, the others read its cache;
        a resumed run keeps its checkpoint's), the models also written to the run directory."""
        with main_first(self.ranks):
            data = load_training_data(
                self.cfg.data, checkpoint_tokenizers(saved) if saved else None
            )
        if self.ranks.is_main:
            for lang, tokenizer in (
                (self.cfg.data.source_lang, data.source_tokenizer),
                (self.cfg.data.target_lang, data.target_tokenizer),
            ):
                atomic_write_bytes(self.run_dir / "spm" / f"{lang}.model", tokenizer.model_proto)
        return data

    def build_model_and_update(self) -> None:
        t, data, ranks = self.t, self.data, self.ranks
        model = build_model(self.cfg.model, len(data.source_tokenizer), len(data.target_tokenizer))
        accelerate(model, self.cfg.model.kernels, self.device)
        self.model = model.to(self.device)
        if fit_source_idf(model, data.splits["train"].source_ids):  # model/attention=tfidf
            log.info("tfidf: IDF of the source pieces over %d sentences", len(data.splits["train"]))
        log.info("model: %s parameters\n%s", f"{count_parameters(model):,}", model)
        if ranks.distributed:  # same initial weights, but each rank its own dropout draws
            torch.manual_seed(t.seed + ranks.rank)
        self.optimizer = build_optimizer(model, t.lr)
        self.average = WeightAverage(model, t.ema_decay) if t.ema_decay else None
        self.update = TrainingStep(
            data_parallel(model, ranks),
            self.optimizer,
            t.clip_norm,
            t.label_smoothing,
            t.normalization,
            self.precision.used,
            self.average,
        )
        self.scheduler = LearningRateSchedule(self.optimizer, t)
        self.train_split = data.splits["train"]
        self.sampler = training_sampler(t, self.train_split, ranks)
        self.subwords = subword_sampler(self.cfg, data)  # None unless subword sampling is on

    def resume(self, saved: dict[str, Any]) -> bool:
        """Restore the saved state; True if that run had finished (nothing left to do)."""
        t = self.t
        try:
            self.progress = restore_training_state(
                saved,
                self.model,
                self.update,
                self.scheduler,
                self.sampler,
                self.ranks,
                self.average,
            )
        except (KeyError, TypeError, ValueError, RuntimeError) as error:  # edited by hand
            raise CheckpointError(
                f"{t.resume}: its saved training state does not fit this run ({error})"
            ) from error
        log.info("resumed from %s at step %d", t.resume, self.progress.step)
        self.stop_reason = stop_condition(t, self.progress, self.sampler.epoch)
        if self.stop_reason and not self.progress.test_pending:
            log.warning(
                "%s already finished (%s): nothing to train; raise that budget to continue",
                t.resume,
                self.stop_reason,
            )
            return True
        if self.stop_reason:
            log.info(
                "%s finished training (%s): running its final test", t.resume, self.stop_reason
            )
        self.progress.test_pending = False
        if self.ranks.is_main:
            carry_checkpoints(Path(t.resume).expanduser(), self.checkpoints)
        return False

    def run(self) -> float:
        """Train until a budget or a signal stops it, validate a last time, test; the best dev
        BLEU. A signal saves last.pt and raises :class:`TrainingInterrupted`."""
        if self.already_finished:
            return self.progress.best_bleu
        if self.ranks.is_main:
            self.reporter = Reporter(self.run_dir, self.cfg, self.data, self.model, self.precision)
        with StopRequests() as self.stop_requests:
            self.train_until_stopped()
            if self.progress.last_eval_step != self.progress.step:
                self.validate()
            if not self.reporter:  # torchrun: the other ranks are done; rank 0 tests
                return self.progress.best_bleu
            final = self.test_after_training()
        self.write_metrics(final)
        return self.progress.best_bleu

    def train_until_stopped(self) -> None:
        """The loop: update, log, validate or save on schedule, until a budget or a signal."""
        t, progress = self.t, self.progress
        self.clock_start = time.monotonic() - progress.train_seconds
        self.last_saved = progress.train_seconds
        self.window = LossWindow()
        self.bar = tqdm(
            total=t.max_steps or None,
            initial=progress.step,
            disable=not t.progress or not self.ranks.is_main,
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )
        while self.stop_reason is None:
            for indices in self.sampler:
                self.train_step(self.training_batch(indices).to(self.device))
                self.report_training()
                self.agree_on_clock_and_signals()
                if progress.step % t.eval_every == 0:
                    self.validate()  # writes last.pt too
                elif progress.train_seconds - self.last_saved >= 60 * (
                    t.checkpoint_minutes or math.inf
                ):
                    self.save_last()
                self.stop_reason = stop_condition(t, progress, self.sampler.epoch)
                if self.signum:
                    self.stop_reason = f"{signal.Signals(self.signum).name} received"
                if self.stop_reason:
                    break
            else:
                self.stop_reason = stop_condition(t, progress, self.sampler.epoch)
        self.bar.close()
        log.info("stopping after step %d: %s", progress.step, self.stop_reason)
        if self.signum:
            self.save_last()
            self.interrupted(f"{self.stop_reason} at step {progress.step}", "continue")

    def training_batch(self, indices: list[int]) -> Batch:
        """The pairs at ``indices``, in pieces drawn anew for this epoch under subword sampling."""
        if not self.subwords:
            return self.train_split.batch(indices)
        batch = self.subwords.batch(indices, self.sampler.epoch)
        upcoming = self.sampler.upcoming()
        if upcoming is not None:
            self.subwords.prefetch(upcoming, self.sampler.epoch)
        return batch

    def train_step(self, batch: Batch) -> None:
        """One update, counted; an update skipped for a non-finite loss or gradient reported."""
        self.scheduler.before_update(self.progress.step + 1)
        result = self.update(batch)
        progress = self.progress
        progress.step += 1
        progress.train_tokens += result.target_tokens
        if result.applied:
            progress.skipped_in_a_row = 0
            self.window.loss_sum += result.loss_sum
            self.window.tokens += result.target_tokens
        else:
            progress.skipped_updates += 1
            progress.skipped_in_a_row += 1
            if self.reporter:
                self.reporter.skipped_update(progress.step, progress.skipped_updates, result)
        self.bar.update(1)

    def report_training(self) -> None:
        """Every ``trainer.log_every`` updates: the window's loss, rate and the learning rate."""
        if not self.reporter or self.progress.step % self.t.log_every:
            return
        loss, rate = self.window.loss(), self.window.tokens_per_sec()
        lr = self.optimizer.param_groups[0]["lr"]
        self.reporter.training(self.progress.step, loss, lr, rate)
        self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:.0f}")
        self.window = LossWindow()

    def agree_on_clock_and_signals(self) -> None:
        """Under torchrun the clock and a signal to any rank are agreed on, so every rank
        validates, saves and stops at the same step."""
        elapsed, signal_seen = max_over_ranks(
            [time.monotonic() - self.clock_start, self.stop_requests.signum or 0],
            self.ranks,
            self.device,
        )
        self.progress.train_seconds, self.signum = elapsed, int(signal_seen)

    def checkpoint_state(self, full: bool) -> dict[str, Any]:
        """What best.pt holds (``full=False``), or last.pt: everything a resume restores."""
        state: dict[str, Any] = {
            "config": config_to_dict(self.cfg),
            "model": self.model.state_dict(),
            "source_spm": self.data.source_tokenizer.model_proto,
            "target_spm": self.data.target_tokenizer.model_proto,
            # the sampler counts epochs
            "progress": {**self.progress.__dict__, "epoch": self.sampler.epoch},
            "precision": {"asked": self.precision.asked, "used": self.precision.used},
        }
        if full:
            state.update(
                optimizer=self.optimizer.state_dict(),
                grad_scaler=self.update.scaler.state_dict(),
                scheduler=self.scheduler.state_dict(),
                sampler=self.sampler.state_dict(),
                rng=rng_state(),
            )
            if self.average:
                state["ema"] = self.average.state_dict()
        return state

    def save_last(self, every_rank: bool = True) -> None:
        """``last.pt``; under torchrun every rank calls this (its RNG joins), rank 0 writes.
        Around the final test rank 0 is alone (``every_rank=False``): its RNG state only."""
        state = self.checkpoint_state(full=True)
        rng_by_rank = gather_from_all(state["rng"], self.ranks) if every_rank else [state["rng"]]
        if self.ranks.distributed and every_rank:
            state["rng_by_rank"] = rng_by_rank
        if self.ranks.is_main:
            save_checkpoint(self.checkpoints / "last.pt", state)
        self.last_saved = self.progress.train_seconds

    def validate(self) -> None:
        """Rank 0 scores dev (with the averaged weights where ``trainer.ema_decay`` is set, which
        best.pt and the kept ``step_<n>.pt`` then hold); every rank steps its LR schedule and
        early stopping on that BLEU."""
        cfg, progress, precision = self.cfg, self.progress, self.precision.used
        assert_same_weights(self.model, self.ranks)
        result = None
        with self.average.swapped_in() if self.average else contextlib.nullcontext():
            if self.ranks.is_main:
                result = evaluate_split(cfg, self.model, self.data, "dev", self.device, precision)
                # Can it tell 我爱你 from 你爱我, and find the subject far back? Beside dev BLEU.
                for probe in PROBE_SPLITS:
                    if probe in self.data.splits:
                        result.metrics |= probe_metrics(
                            evaluate_split(
                                cfg, self.model, self.data, probe, self.device, precision
                            ),
                            probe,
                        )
            bleu = broadcast_from_main(result.metrics["bleu"] if result else 0.0, self.ranks)
            if bleu > progress.best_bleu:
                progress.best_bleu, progress.best_step = bleu, progress.step
                progress.evals_without_improvement = 0
                if self.ranks.is_main:
                    save_checkpoint(self.checkpoints / "best.pt", self.checkpoint_state(False))
            else:
                progress.evals_without_improvement += 1
            if self.ranks.is_main and self.t.keep_checkpoints:  # for average_checkpoints.py
                keep_validation_checkpoint(
                    self.checkpoints,
                    progress.step,
                    self.checkpoint_state(full=False),
                    self.t.keep_checkpoints,
                )
            if result and self.reporter:  # a self-attention encoder's heatmaps: the average
                self.reporter.validation(progress.step, result, progress.best_bleu)
        self.scheduler.after_validation(bleu)
        if result:
            log_validation(progress, result)
        progress.last_eval_step = progress.step
        self.save_last()
        self.window = LossWindow()  # the validation's time is not training time

    def test_after_training(self) -> dict[str, Any]:
        """Score best.pt on the test splits. The final test is part of the run: a signal stops
        it at once, and last.pt (the trained weights, not best.pt's that the test loads)
        resumes into it."""
        assert self.reporter, "rank 0 alone tests"
        trained = {name: tensor.clone() for name, tensor in self.model.state_dict().items()}
        signum = self.stop_requests.signum or 0  # one received during the final validation
        if not signum:
            try:
                with self.stop_requests.at_once():
                    final = final_test(
                        self.cfg,
                        self.model,
                        self.data,
                        self.device,
                        self.precision.used,
                        self.checkpoints / "best.pt",
                        self.reporter,
                    )
            except SignalReceived as received:
                signum = received.signum
            self.model.load_state_dict(trained)
        if signum:
            self.progress.test_pending = True
            self.save_last(every_rank=False)
            self.signum = signum
            self.interrupted(
                f"{signal.Signals(signum).name} received during the final test", "test"
            )
        return final

    def interrupted(self, what: str, then: str) -> None:
        """Close the logs and raise :class:`TrainingInterrupted` naming last.pt (saved)."""
        if self.reporter:
            self.reporter.close_interrupted()
        last = last_pt_path(self.checkpoints)
        raise TrainingInterrupted(
            self.signum,
            f"{what}: saved {last}; {then} with the same overrides and trainer.resume={last}",
        )

    def write_metrics(self, final: dict[str, Any]) -> None:
        """metrics.json: the test scores, the run's counters and where they were measured."""
        assert self.reporter, "rank 0 alone writes"
        if self.resumed_into_test:
            self.save_last(every_rank=False)  # this run's own last.pt, no longer test_pending
        progress = self.progress
        final.update(
            best_dev_bleu=progress.best_bleu,
            best_step=progress.best_step,
            steps=progress.step,
            train_seconds=progress.train_seconds,
            train_tokens_per_sec=progress.train_tokens / max(progress.train_seconds, 1e-9),
            parameters=count_parameters(self.model),
            stop_reason=self.stop_reason,
            precision={"asked": self.precision.asked, "used": self.precision.used},
            hardware=hardware_summary(self.device),
            **code_record(self.commit),
        )
        atomic_write_bytes(self.run_dir / "metrics.json", json.dumps(final, indent=2).encode())
        self.reporter.close(final)


def log_validation(progress: TrainingProgress, result: EvalResult) -> None:
    log.info(
        "step %d: dev loss %.3f, BLEU %.2f, chrF %.2f%s (best %.2f at step %d)",
        progress.step,
        result.loss,
        result.metrics["bleu"],
        result.metrics["chrf"],
        f", AER {result.metrics['aer']:.3f}" if "aer" in result.metrics else "",
        progress.best_bleu,
        progress.best_step,
    )


def last_pt_path(checkpoints: Path) -> Path:
    """Where to resume from, absolute: the log line is copied into another shell."""
    return (checkpoints / "last.pt").resolve()


def load_resume_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """The ``last.pt`` to resume from, once its config is checked against the current one."""
    path = cfg.trainer.resume
    saved = load_checkpoint(path)
    check_resumable(path, saved, averaged=bool(cfg.trainer.ema_decay))
    resumed_config(path, saved, cfg)
    check_finite_weights(path, saved["model"])
    return saved


def warn_on_precision_change(path: str, saved: dict[str, Any], precision: PrecisionChoice) -> None:
    """A run resumed on another kind of machine may compute in another precision (``auto``)."""
    before = saved.get("precision", {}).get("used", saved["config"]["trainer"]["precision"])
    if before != precision.used:
        log.warning(
            "%s trained in %s; it continues in %s (%s)", path, before, precision.used, precision
        )


def checkpoint_tokenizers(state: dict[str, Any]) -> tuple[SubwordTokenizer, SubwordTokenizer]:
    """The sentencepiece models a checkpoint carries: a resumed run never retrains them."""
    return SubwordTokenizer(state["source_spm"]), SubwordTokenizer(state["target_spm"])


def training_sampler(
    t: DictConfig, train_split: TokenizedSplit, ranks: Ranks | None = None
) -> BucketBatchSampler:
    """Length-bucketed batches of the training split (length: the longer side plus EOS).

    ``trainer.batch_size`` is the global batch: under torchrun each rank takes its share.
    """
    ranks = ranks or Ranks()
    lengths = train_split.pair_lengths()
    parts = train_split.parts
    groups = train_split.corpus_of() if parts else None
    sampler = BucketBatchSampler(
        lengths,
        t.batch_type,
        t.batch_size,
        t.bucket_batches,
        t.seed,
        ranks.rank,
        ranks.world_size,
        groups,
        [part.weight for part in parts] if parts else None,
    )
    for part, members, quota in zip(parts, sampler.members, sampler.quotas, strict=True):
        log.info(
            "train corpus %s: %d pairs (%d after the length filter), weight %g: %d draws an "
            "epoch (%.1f%% of it, each pair %.2f times)",
            part.name,
            part.pairs,
            len(members),
            part.weight,
            quota,
            100 * quota / max(1, len(lengths)),
            quota / max(1, len(members)),
        )
    return sampler


def subword_sampler(cfg: DictConfig, data: TrainingData) -> SubwordSampler | None:
    """Where ``data.subword_sampling_alpha`` is set, what draws the training pairs' pieces anew
    for each epoch (seq2seq/data/subword_sampling.py)."""
    alpha = cfg.data.subword_sampling_alpha
    if alpha is None:
        return None
    return SubwordSampler(
        data.splits["train"],
        data.source_tokenizer,
        data.target_tokenizer,
        alpha,
        cfg.trainer.seed,
        cfg.data.max_length,
    )


def stop_condition(t: DictConfig, progress: TrainingProgress, epoch: int) -> str | None:
    """Why training should stop now, or None."""
    if t.max_skipped_in_a_row and progress.skipped_in_a_row >= t.max_skipped_in_a_row:
        return (
            f"{progress.skipped_in_a_row} updates in a row had a non-finite loss or gradient "
            "(trainer.max_skipped_in_a_row); try a lower trainer.lr or trainer.clip_norm"
        )
    if t.max_steps and progress.step >= t.max_steps:
        return f"trainer.max_steps={t.max_steps} reached"
    if t.max_epochs and epoch >= t.max_epochs:
        return f"trainer.max_epochs={t.max_epochs} reached"
    if t.max_minutes and progress.train_seconds >= 60 * t.max_minutes:
        return f"trainer.max_minutes={t.max_minutes} reached"
    if (
        t.early_stopping_patience
        and progress.evals_without_improvement >= t.early_stopping_patience
    ):
        return f"no dev BLEU improvement in {t.early_stopping_patience} validations"
    return None


def evaluate_split(
    cfg: DictConfig,
    model: Seq2Seq,
    data: TrainingData,
    split: str,
    device: torch.device,
    precision: str,
) -> EvalResult:
    return evaluate(
        model,
        data.splits[split],
        data.source_tokenizer,
        data.target_tokenizer,
        device,
        target_lang=cfg.data.target_lang,
        length_buckets=list(cfg.data.length_buckets),
        batch_size=cfg.trainer.eval_batch_size,
        search=SearchSettings.from_config(cfg, precision),
        with_alignment=data.has_gold_alignments and model.has_attention_weights,
        word_order=split == "word_order",
        long_range=split == "long_range",
        # alignment_layer=null: the Transformer layer aligning best on dev.
        choose_alignment_layer=split == "dev"
        and cfg.model.decoder.transformer.alignment_layer is None,
    )


# Held-out splits that probe one ability each, scored at every validation too.
PROBE_SPLITS = ("word_order", "long_range")


def probe_metrics(result: EvalResult, split: str) -> dict[str, float]:
    """A probe split's accuracies, logged at validation as valid/word_order_*, long_range_*."""
    return {name: value for name, value in result.metrics.items() if name.startswith(split)}


def final_test(
    cfg: DictConfig,
    model: Seq2Seq,
    data: TrainingData,
    device: torch.device,
    precision: str,
    best_path: Path,
    reporter: Reporter,
) -> dict[str, Any]:
    """Score the best checkpoint on test (and the long and probe splits where there are)."""
    model.load_state_dict(load_checkpoint(best_path, map_location=device)["model"])
    final: dict[str, Any] = {}
    for split in ("test", "long", *PROBE_SPLITS):
        if split not in data.splits:
            continue
        result = evaluate_split(cfg, model, data, split, device, precision)
        reporter.test(split, result)
        final[split] = {
            **result.metrics,
            "bleu_by_length": result.bleu_by_length,
            "signature": result.signature,
        }
        log.info(
            "%s: BLEU %.2f, chrF %.2f%s (%s)",
            split,
            result.metrics["bleu"],
            result.metrics["chrf"],
            "".join(
                f", {k} {v:.3f}"
                for k, v in result.metrics.items()
                if k.startswith(PROBE_SPLITS) and "/" not in k
            ),
            result.signature,
        )
    return final


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
