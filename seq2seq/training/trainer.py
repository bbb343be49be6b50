"""The training loop: teacher forcing, Adam, clipping, validation, checkpoints, final test."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import signal
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from seq2seq.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
)
from seq2seq.config import config_to_dict
from seq2seq.data.batching import BucketBatchSampler
from seq2seq.data.dataset import (
    TokenizedSplit,
    TrainingData,
    build_tokenizers,
    load_corpus,
    tokenize_split,
)
from seq2seq.data.tokenizer import SubwordTokenizer
from seq2seq.device import PrecisionChoice, choose_precision, hardware_summary, keep_freed_memory
from seq2seq.evaluation import EvalResult, evaluate
from seq2seq.files import atomic_write_bytes
from seq2seq.model.attention import fit_source_idf
from seq2seq.model.seq2seq import Seq2Seq, build_model
from seq2seq.search import BEAM_STOPS
from seq2seq.training.averaging import WeightAverage
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
from seq2seq.training.reporting import Reporter
from seq2seq.training.resume import (
    TrainingProgress,
    carry_best_checkpoint,
    check_resume_config,
    restore_training_state,
)
from seq2seq.training.run_dir import claim_run_dir
from seq2seq.training.schedule import LearningRateSchedule
from seq2seq.training.settings import check_settings
from seq2seq.training.signals import SignalReceived, StopRequests, TrainingInterrupted
from seq2seq.training.step import TrainingStep, build_optimizer

log = logging.getLogger(__name__)


def prepare_data(
    cfg: DictConfig, tokenizers: tuple[SubwordTokenizer, SubwordTokenizer] | None = None
) -> TrainingData:
    """Corpus → sentencepiece models (training split only; or ``tokenizers``, those of a run
    being resumed) → tokenized splits, train length-filtered."""
    corpus = load_corpus(cfg.data)
    for split, examples in corpus.splits.items():
        log.info(
            "%s: %d pairs (%d malformed lines skipped)",
            split,
            len(examples),
            corpus.skipped.get(split, 0),
        )
    source_tok, target_tok = tokenizers or build_tokenizers(corpus, cfg.data)
    splits = {
        name: tokenize_split(
            name,
            examples,
            source_tok,
            target_tok,
            cfg.data.max_length,
            over_long="drop" if name == "train" else "truncate",
        )
        for name, examples in corpus.splits.items()
    }
    return TrainingData(source_tok, target_tok, splits, corpus.has_gold_alignments)


def train(cfg: DictConfig, run_dir: Path) -> float:
    """Train as configured, writing everything under ``run_dir``; returns the best dev BLEU.

    Under torchrun every rank runs this (see seq2seq/training/distributed.py); rank 0 alone
    writes ``run_dir``, validates and scores the test splits.
    """
    check_settings(cfg)
    t = cfg.trainer
    if t.beam_stop not in BEAM_STOPS:  # checked now, not at the first validation
        raise ValueError(f"trainer.beam_stop must be one of {BEAM_STOPS}, got {t.beam_stop!r}")
    ranks = current_ranks()
    claim_run_dir(run_dir, t, ranks.is_main)
    random.seed(t.seed)
    torch.manual_seed(t.seed)
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    keep_freed_memory()
    device = training_device(t.device, ranks)
    precision = choose_precision(t.precision, device)
    log.info("precision: %s", precision)
    saved = load_resume_checkpoint(cfg) if t.resume else None
    if saved is not None:
        warn_on_precision_change(t.resume, saved, precision)
    with main_first(ranks):  # rank 0 trains the sentencepiece models, the others read its cache
        data = prepare_data(cfg, checkpoint_tokenizers(saved) if saved else None)
    if ranks.is_main:
        for lang, tokenizer in (
            (cfg.data.source_lang, data.source_tokenizer),
            (cfg.data.target_lang, data.target_tokenizer),
        ):
            atomic_write_bytes(run_dir / "spm" / f"{lang}.model", tokenizer.model_proto)

    model = build_model(cfg.model, len(data.source_tokenizer), len(data.target_tokenizer))
    model.to(device)
    if fit_source_idf(model, data.splits["train"].source_ids):  # model/attention=tfidf
        log.info(
            "tfidf: IDF of the source pieces over %d training sentences", len(data.splits["train"])
        )
    log.info("model: %s parameters\n%s", f"{count_parameters(model):,}", model)
    if ranks.distributed:  # same initial weights, but each rank its own dropout draws
        torch.manual_seed(t.seed + ranks.rank)
    optimizer = build_optimizer(model, t.lr)
    average = WeightAverage(model, t.ema_decay) if t.ema_decay else None
    update = TrainingStep(
        data_parallel(model, ranks),
        optimizer,
        t.clip_norm,
        t.label_smoothing,
        t.normalization,
        precision.used,
        average,
    )
    scheduler = LearningRateSchedule(optimizer, t)
    train_split = data.splits["train"]
    sampler = training_sampler(t, train_split, ranks)

    progress = TrainingProgress()
    checkpoints = run_dir / "checkpoints"
    stop_reason = None  # set on resume when only the final test is left to do
    if saved is not None:
        progress = restore_training_state(saved, model, update, scheduler, sampler, ranks, average)
        log.info("resumed from %s at step %d", t.resume, progress.step)
        stop_reason = stop_condition(t, progress, sampler.epoch)
        if stop_reason and not progress.test_pending:
            log.warning(
                "%s already finished (%s): nothing to train; raise that budget to continue",
                t.resume,
                stop_reason,
            )
            return progress.best_bleu
        if stop_reason:
            log.info("%s finished training (%s): running its final test", t.resume, stop_reason)
        progress.test_pending = False
        if ranks.is_main:
            carry_best_checkpoint(Path(t.resume).expanduser(), checkpoints)
    resumed_into_test = stop_reason is not None
    reporter = Reporter(run_dir, cfg, data, model, precision) if ranks.is_main else None

    def checkpoint_state(full: bool) -> dict[str, Any]:
        state: dict[str, Any] = {
            "config": config_to_dict(cfg),
            "model": model.state_dict(),
            "source_spm": data.source_tokenizer.model_proto,
            "target_spm": data.target_tokenizer.model_proto,
            "progress": {**progress.__dict__, "epoch": sampler.epoch},  # the sampler counts epochs
            "precision": {"asked": precision.asked, "used": precision.used},
        }
        if full:
            state.update(
                optimizer=optimizer.state_dict(),
                grad_scaler=update.scaler.state_dict(),
                scheduler=scheduler.state_dict(),
                sampler=sampler.state_dict(),
                rng=rng_state(),
            )
            if average:
                state["ema"] = average.state_dict()
        return state

    def save_last(every_rank: bool = True) -> None:
        """``last.pt``; under torchrun every rank calls this (its RNG joins), rank 0 writes.
        Around the final test rank 0 is alone (``every_rank=False``): its RNG state only."""
        state = checkpoint_state(full=True)
        rng_by_rank = gather_from_all(state["rng"], ranks) if every_rank else [state["rng"]]
        if ranks.distributed and every_rank:
            state["rng_by_rank"] = rng_by_rank
        if ranks.is_main:
            save_checkpoint(checkpoints / "last.pt", state)

    def validate() -> None:
        """Rank 0 scores dev (with the averaged weights where ``trainer.ema_decay`` is set, which
        best.pt then holds); every rank steps its LR schedule and early stopping on that BLEU."""
        assert_same_weights(model, ranks)
        result = None
        with average.swapped_in() if average else contextlib.nullcontext():
            if ranks.is_main:
                result = evaluate_split(cfg, model, data, "dev", device, precision.used)
                # Can it tell 我爱你 from 你爱我, and find the subject far back? Beside dev BLEU.
                for probe in PROBE_SPLITS:
                    if probe in data.splits:
                        result.metrics |= probe_metrics(
                            evaluate_split(cfg, model, data, probe, device, precision.used), probe
                        )
            bleu = broadcast_from_main(result.metrics["bleu"] if result else 0.0, ranks)
            if bleu > progress.best_bleu:
                progress.best_bleu, progress.best_step = bleu, progress.step
                progress.evals_without_improvement = 0
                if ranks.is_main:
                    save_checkpoint(checkpoints / "best.pt", checkpoint_state(full=False))
            else:
                progress.evals_without_improvement += 1
            if result:  # the heatmaps of a self-attention encoder run it: still the average
                reporter.validation(progress.step, result)
        scheduler.after_validation(bleu)
        if result:
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
        progress.last_eval_step = progress.step
        save_last()

    start = time.monotonic() - progress.train_seconds
    bar = tqdm(
        total=t.max_steps or None,
        initial=progress.step,
        disable=not t.progress or not ranks.is_main,
        desc="train",
        unit="step",
        dynamic_ncols=True,
    )
    window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()
    last_saved = progress.train_seconds
    signum = 0
    with StopRequests() as stop_requests:
        while stop_reason is None:
            for indices in sampler:
                scheduler.before_update(progress.step + 1)
                result = update(train_split.batch(indices).to(device))
                progress.step += 1
                progress.train_tokens += result.target_tokens
                if result.applied:
                    progress.skipped_in_a_row = 0
                    window_loss += result.loss_sum
                    window_tokens += result.target_tokens
                else:
                    progress.skipped_updates += 1
                    progress.skipped_in_a_row += 1
                    if reporter:
                        reporter.skipped_update(progress.step, progress.skipped_updates, result)
                bar.update(1)

                if reporter and progress.step % t.log_every == 0:
                    elapsed = time.monotonic() - window_start
                    train_loss = window_loss / max(window_tokens, 1)
                    reporter.training(
                        progress.step,
                        train_loss,
                        optimizer.param_groups[0]["lr"],
                        window_tokens / elapsed,
                    )
                    bar.set_postfix(
                        loss=f"{train_loss:.3f}", tok_s=f"{window_tokens / elapsed:.0f}"
                    )
                    window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()

                # Under torchrun the clock and a signal to any rank are agreed on, so every rank
                # validates, saves and stops at the same step.
                elapsed, signal_seen = max_over_ranks(
                    [time.monotonic() - start, stop_requests.signum or 0], ranks, device
                )
                progress.train_seconds, signum = elapsed, int(signal_seen)
                if progress.step % t.eval_every == 0:
                    validate()  # writes last.pt too
                    window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()
                    last_saved = progress.train_seconds
                elif progress.train_seconds - last_saved >= 60 * (t.checkpoint_minutes or math.inf):
                    save_last()
                    last_saved = progress.train_seconds
                stop_reason = stop_condition(t, progress, sampler.epoch)
                if signum:
                    stop_reason = f"{signal.Signals(signum).name} received"
                if stop_reason:
                    break
            else:
                stop_reason = stop_condition(t, progress, sampler.epoch)
        bar.close()
        log.info("stopping after step %d: %s", progress.step, stop_reason)
        if signum:
            save_last()
            if reporter:
                reporter.close_interrupted()
            raise TrainingInterrupted(
                signum,
                f"{stop_reason} at step {progress.step}: saved {last_pt_path(checkpoints)}; "
                f"continue with the same overrides and trainer.resume={last_pt_path(checkpoints)}",
            )
        if progress.last_eval_step != progress.step:
            validate()
        if not reporter:  # torchrun: the other ranks are done; rank 0 scores the test splits
            return progress.best_bleu

        # The final test is part of the run: a signal stops it at once, and last.pt (the trained
        # weights, not best.pt's that the test loads) resumes into it.
        trained = {name: tensor.clone() for name, tensor in model.state_dict().items()}
        signum = stop_requests.signum or 0  # one received during the final validation
        if not signum:
            try:
                with stop_requests.at_once():
                    final = final_test(
                        cfg, model, data, device, precision.used, checkpoints / "best.pt", reporter
                    )
            except SignalReceived as received:
                signum = received.signum
            model.load_state_dict(trained)
        if signum:
            progress.test_pending = True
            save_last(every_rank=False)
            reporter.close_interrupted()
            raise TrainingInterrupted(
                signum,
                f"{signal.Signals(signum).name} received during the final test: saved "
                f"{last_pt_path(checkpoints)}; test it with the same overrides and "
                f"trainer.resume={last_pt_path(checkpoints)}",
            )
    if resumed_into_test:
        save_last(every_rank=False)  # this run's own last.pt, no longer test_pending
    final.update(
        best_dev_bleu=progress.best_bleu,
        best_step=progress.best_step,
        steps=progress.step,
        train_seconds=progress.train_seconds,
        train_tokens_per_sec=progress.train_tokens / max(progress.train_seconds, 1e-9),
        parameters=count_parameters(model),
        stop_reason=stop_reason,
        precision={"asked": precision.asked, "used": precision.used},
        hardware=hardware_summary(device),
    )
    atomic_write_bytes(run_dir / "metrics.json", json.dumps(final, indent=2).encode())
    reporter.close(final)
    return progress.best_bleu


def last_pt_path(checkpoints: Path) -> Path:
    """Where to resume from, absolute: the log line is copied into another shell."""
    return (checkpoints / "last.pt").resolve()


def load_resume_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """The ``last.pt`` to resume from, once its config is checked against the current one."""
    saved = load_checkpoint(cfg.trainer.resume)
    if "optimizer" not in saved:
        raise ValueError(
            f"{cfg.trainer.resume} holds weights only; resume from a run's checkpoints/last.pt"
        )
    check_resume_config(cfg.trainer.resume, saved["config"], config_to_dict(cfg))
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
    lengths = [
        max(len(s), len(g)) + 1
        for s, g in zip(train_split.source_ids, train_split.target_ids, strict=True)
    ]
    return BucketBatchSampler(
        lengths,
        t.batch_type,
        t.batch_size,
        t.bucket_batches,
        t.seed,
        ranks.rank,
        ranks.world_size,
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
        max_ratio=cfg.trainer.max_output_ratio,
        max_extra=cfg.trainer.max_output_extra,
        beam_size=cfg.trainer.eval_beam,
        length_penalty=cfg.trainer.length_penalty,
        beam_stop=cfg.trainer.beam_stop,
        precision=precision,
        with_alignment=data.has_gold_alignments and model.has_attention_weights,
        word_order=split == "word_order",
        long_range=split == "long_range",
        # model.decoder.alignment_layer=null: the Transformer layer aligning best on dev.
        choose_alignment_layer=split == "dev" and cfg.model.decoder.alignment_layer is None,
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
