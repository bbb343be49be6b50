"""The training loop: teacher forcing, Adam, clipping, validation, checkpoints, final test."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from seq2seq.checkpoint import (
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from seq2seq.config import config_to_dict
from seq2seq.data.batching import BucketBatchSampler
from seq2seq.data.dataset import (
    TokenizedSplit,
    build_tokenizers,
    load_corpus,
    tokenize_split,
)
from seq2seq.data.tokenizer import SubwordTokenizer
from seq2seq.device import select_device
from seq2seq.evaluation import EvalResult, evaluate
from seq2seq.files import atomic_write_bytes
from seq2seq.model.seq2seq import Seq2Seq, build_model
from seq2seq.training.reporting import Reporter
from seq2seq.training.signals import StopRequests, TrainingInterrupted
from seq2seq.training.step import TrainingStep, build_optimizer

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    source_tokenizer: SubwordTokenizer
    target_tokenizer: SubwordTokenizer
    splits: dict[str, TokenizedSplit]
    has_gold_alignments: bool


def prepare_data(cfg: DictConfig) -> TrainingData:
    """Corpus → sentencepiece models (training split only) → tokenized, length-filtered train."""
    corpus = load_corpus(cfg.data)
    for split, examples in corpus.splits.items():
        log.info(
            "%s: %d pairs (%d malformed lines skipped)",
            split,
            len(examples),
            corpus.skipped.get(split, 0),
        )
    source_tok, target_tok = build_tokenizers(corpus, cfg.data)
    splits = {
        name: tokenize_split(
            name,
            examples,
            source_tok,
            target_tok,
            cfg.data.max_length if name == "train" else None,
        )
        for name, examples in corpus.splits.items()
    }
    return TrainingData(source_tok, target_tok, splits, corpus.has_gold_alignments)


def train(cfg: DictConfig, run_dir: Path) -> float:
    """Train as configured, writing everything under ``run_dir``; returns the best dev BLEU."""
    t = cfg.trainer
    torch.manual_seed(t.seed)
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    device = select_device(t.device)
    data = prepare_data(cfg)
    for lang, tokenizer in (
        (cfg.data.source_lang, data.source_tokenizer),
        (cfg.data.target_lang, data.target_tokenizer),
    ):
        atomic_write_bytes(run_dir / "spm" / f"{lang}.model", tokenizer.model_proto)

    model = build_model(cfg.model, len(data.source_tokenizer), len(data.target_tokenizer))
    model.to(device)
    log.info("model: %s parameters\n%s", f"{count_parameters(model):,}", model)
    optimizer = build_optimizer(model, t.lr)
    update = TrainingStep(
        model, optimizer, t.clip_norm, t.label_smoothing, t.normalization, t.precision
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=t.lr_factor, patience=t.lr_patience, min_lr=t.min_lr
    )
    train_split = data.splits["train"]
    sampler = training_sampler(t, train_split)

    progress = TrainingProgress()
    checkpoints = run_dir / "checkpoints"
    if t.resume:
        progress = resume(t.resume, model, update, scheduler, sampler, device)
        carry_best_checkpoint(Path(t.resume).expanduser(), checkpoints)
    reporter = Reporter(run_dir, cfg, data, model)

    def checkpoint_state(full: bool) -> dict[str, Any]:
        state: dict[str, Any] = {
            "config": config_to_dict(cfg),
            "model": model.state_dict(),
            "source_spm": data.source_tokenizer.model_proto,
            "target_spm": data.target_tokenizer.model_proto,
            "progress": progress.__dict__.copy(),
        }
        if full:
            state.update(
                optimizer=optimizer.state_dict(),
                grad_scaler=update.scaler.state_dict(),
                scheduler=scheduler.state_dict(),
                sampler=sampler.state_dict(),
                rng=rng_state(),
            )
        return state

    def validate() -> EvalResult:
        result = evaluate_split(cfg, model, data, "dev", device)
        if "word_order" in data.splits:  # can the model tell 我爱你 from 你爱我? beside dev BLEU
            result.metrics |= word_order_metrics(
                evaluate_split(cfg, model, data, "word_order", device)
            )
        scheduler.step(result.metrics["bleu"])
        improved = result.metrics["bleu"] > progress.best_bleu
        if improved:
            progress.best_bleu, progress.best_step = result.metrics["bleu"], progress.step
            progress.evals_without_improvement = 0
            save_checkpoint(checkpoints / "best.pt", checkpoint_state(full=False))
        else:
            progress.evals_without_improvement += 1
        reporter.validation(progress.step, result)
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
        save_checkpoint(checkpoints / "last.pt", checkpoint_state(full=True))
        progress.last_eval_step = progress.step
        return result

    stop_reason = None
    start = time.monotonic() - progress.train_seconds
    bar = tqdm(
        total=t.max_steps or None,
        initial=progress.step,
        disable=not t.progress,
        desc="train",
        unit="step",
        dynamic_ncols=True,
    )
    window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()
    last_saved = time.monotonic()
    with StopRequests() as stop_requests:
        while stop_reason is None:
            for indices in sampler:
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
                    reporter.skipped_update(progress.step, progress.skipped_updates, result)
                bar.update(1)

                if progress.step % t.log_every == 0:
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

                progress.train_seconds = time.monotonic() - start
                if progress.step % t.eval_every == 0:
                    validate()  # writes last.pt too
                    window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()
                    last_saved = time.monotonic()
                elif time.monotonic() - last_saved >= 60 * (t.checkpoint_minutes or math.inf):
                    save_checkpoint(checkpoints / "last.pt", checkpoint_state(full=True))
                    last_saved = time.monotonic()
                stop_reason = stop_condition(t, progress, sampler.epoch)
                if stop_requests.signum:
                    stop_reason = f"{stop_requests.name} received"
                if stop_reason:
                    break
            else:
                progress.epoch = sampler.epoch
                stop_reason = stop_condition(t, progress, sampler.epoch)
    bar.close()
    log.info("stopping after step %d: %s", progress.step, stop_reason)
    if stop_requests.signum:
        save_checkpoint(checkpoints / "last.pt", checkpoint_state(full=True))
        reporter.close_interrupted()
        resume_from = (checkpoints / "last.pt").resolve()
        raise TrainingInterrupted(
            stop_requests.signum,
            f"{stop_reason} at step {progress.step}: saved {resume_from}; continue with the "
            f"same overrides and trainer.resume={resume_from}",
        )
    if progress.last_eval_step != progress.step:
        validate()

    final = final_test(cfg, model, data, device, checkpoints / "best.pt", reporter)
    final.update(
        best_dev_bleu=progress.best_bleu,
        best_step=progress.best_step,
        steps=progress.step,
        train_seconds=progress.train_seconds,
        train_tokens_per_sec=progress.train_tokens / max(progress.train_seconds, 1e-9),
        parameters=count_parameters(model),
        stop_reason=stop_reason,
    )
    atomic_write_bytes(run_dir / "metrics.json", json.dumps(final, indent=2).encode())
    reporter.close(final)
    return progress.best_bleu


def training_sampler(t: DictConfig, train_split: TokenizedSplit) -> BucketBatchSampler:
    """Length-bucketed batches of the training split (length: the longer side plus EOS)."""
    lengths = [
        max(len(s), len(g)) + 1
        for s, g in zip(train_split.source_ids, train_split.target_ids, strict=True)
    ]
    return BucketBatchSampler(lengths, t.batch_type, t.batch_size, t.bucket_batches, t.seed)


@dataclass
class TrainingProgress:
    step: int = 0
    epoch: int = 0
    train_tokens: int = 0
    train_seconds: float = 0.0
    best_bleu: float = -math.inf
    best_step: int = 0
    evals_without_improvement: int = 0
    last_eval_step: int = -1
    skipped_updates: int = 0  # updates whose loss or gradient was not finite
    skipped_in_a_row: int = 0


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


def resume(
    path: str,
    model: Seq2Seq,
    update: TrainingStep,
    scheduler: Any,
    sampler: BucketBatchSampler,
    device: torch.device,
) -> TrainingProgress:
    """Restore everything ``last.pt`` saved, so training continues where it stopped."""
    state = load_checkpoint(path, map_location=device)
    if "optimizer" not in state:
        raise ValueError(f"{path} holds weights only; resume from a run's checkpoints/last.pt")
    model.load_state_dict(state["model"])
    update.optimizer.load_state_dict(state["optimizer"])
    if state.get("grad_scaler"):  # fp16 loss scale; empty for fp32/bf16
        update.scaler.load_state_dict(state["grad_scaler"])
    scheduler.load_state_dict(state["scheduler"])
    sampler.load_state_dict(state["sampler"])
    restore_rng_state(state["rng"])
    progress = TrainingProgress(**state["progress"])
    log.info("resumed from %s at step %d", path, progress.step)
    return progress


def carry_best_checkpoint(resumed_from: Path, checkpoints: Path) -> None:
    """A run resumed into a new directory starts with the best checkpoint it resumed from.

    Otherwise a resumed run that never beats the restored best dev BLEU would have no best.pt.
    """
    source, target = resumed_from.parent / "best.pt", checkpoints / "best.pt"
    if source.is_file() and source.resolve() != target.resolve():
        atomic_write_bytes(target, source.read_bytes())


def evaluate_split(
    cfg: DictConfig, model: Seq2Seq, data: TrainingData, split: str, device: torch.device
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
        precision=cfg.trainer.precision,
        with_alignment=data.has_gold_alignments and model.has_attention_weights,
        word_order=split == "word_order",
    )


def word_order_metrics(result: EvalResult) -> dict[str, float]:
    """The word-order split's accuracies, logged at validation as valid/word_order_*."""
    return {name: value for name, value in result.metrics.items() if name.startswith("word_order")}


def final_test(
    cfg: DictConfig,
    model: Seq2Seq,
    data: TrainingData,
    device: torch.device,
    best_path: Path,
    reporter: Reporter,
) -> dict[str, Any]:
    """Score the best checkpoint on test (and the long and word-order splits where there are)."""
    model.load_state_dict(load_checkpoint(best_path, map_location=device)["model"])
    final: dict[str, Any] = {}
    for split in ("test", "long", "word_order"):
        if split not in data.splits:
            continue
        result = evaluate_split(cfg, model, data, split, device)
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
            "".join(f", {k} {v:.3f}" for k, v in result.metrics.items() if "word_order" in k),
            result.signature,
        )
    return final


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
