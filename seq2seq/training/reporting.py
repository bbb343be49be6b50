"""What a run shows: TensorBoard scalars, alignment heatmaps, sample translations, HParams.

One :class:`Reporter` (and so one TensorBoard writer) per run, created inside the Hydra task:
a writer shared between multirun jobs would write into the wrong run. The curves come first in
CUSTOM SCALARS (:data:`SCALAR_LAYOUT`: training, then validation, then test); HPARAMS reads its
metrics from those same tags (``valid/best_bleu``, ``test/bleu``, ...), so no metric is written
twice and SCALARS holds no one-point ``hparams/*`` charts.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from seq2seq.config.schema import PROJECT_ROOT
from seq2seq.data.batching import collate
from seq2seq.data.tokenizer import EOS_ID
from seq2seq.files import atomic_write_bytes
from seq2seq.metrics.alignment import piece_word_indices_by_boundaries, piece_word_indices_by_spans
from seq2seq.metrics.long_range import LONG_RANGE_METRIC
from seq2seq.metrics.word_order import WORD_ORDER_METRICS
from seq2seq.model.encoder import SelfAttentionEncoder
from seq2seq.model.transformer_decoder import TransformerDecoder
from seq2seq.viz.heatmap import (
    column_parts,
    figure_to_png,
    plot_alignment,
    plot_attention_grid,
    png_to_image_array,
    save_alignment,
)

if TYPE_CHECKING:
    from seq2seq.data.dataset import TrainingData
    from seq2seq.device import PrecisionChoice
    from seq2seq.evaluation import EvalResult, Translation
    from seq2seq.model.seq2seq import Seq2Seq
    from seq2seq.training.step import UpdateResult

log = logging.getLogger(__name__)

HPARAM_KEYS = (
    "data.name",
    "data.source_lang",
    "data.target_lang",
    "model.name",
    "model.attention.name",
    "model.encoder.name",
    "model.decoder.name",
    "model.embed_size",
    "model.dropout",
    "trainer.lr",
    "trainer.batch_size",
    "trainer.batch_type",
    "trainer.seed",
    "trainer.label_smoothing",
    "trainer.precision",
)


# CUSTOM SCALARS, in this order (each chart: tag regular expressions drawn on one set of axes).
SCALAR_LAYOUT = {
    "1 training": {
        "loss (per target token)": ["Multiline", ["^train/loss$"]],
        "learning rate": ["Multiline", ["^train/lr$"]],
        "target tokens/s": ["Multiline", ["^train/tokens_per_sec$"]],
        "skipped updates": ["Multiline", ["^train/skipped_updates$"]],
    },
    "2 validation": {
        "BLEU (and the best so far)": ["Multiline", ["^valid/bleu$", "^valid/best_bleu$"]],
        "chrF": ["Multiline", ["^valid/chrf$"]],
        "loss": ["Multiline", ["^valid/loss$"]],
        "AER": ["Multiline", ["^valid/aer"]],
        "BLEU by source length": ["Multiline", ["^valid/bleu_by_len/"]],
        "probes": ["Multiline", ["^valid/(word_order|long_range)"]],
    },
    "3 test (the best checkpoint, once)": {
        "BLEU": ["Multiline", ["^test[^/]*/bleu$"]],
        "chrF": ["Multiline", ["^test[^/]*/chrf$"]],
    },
}


class Reporter:
    def __init__(
        self,
        run_dir: Path,
        cfg: DictConfig,
        data: TrainingData,
        model: Seq2Seq,
        precision: PrecisionChoice,
    ) -> None:
        self.run_dir = run_dir
        self.cfg = cfg
        self.precision = precision
        self.data = data
        self.writer = SummaryWriter(log_dir=str(run_dir))
        self.writer.add_custom_scalars(SCALAR_LAYOUT)
        self.model = model
        # A Transformer decoder's cross-attention per layer and head (alignment_heads/<n>).
        self.transformer = model.decoder if isinstance(model.decoder, TransformerDecoder) else None
        self.draws_alignments = model.has_attention_weights
        if not self.draws_alignments:
            log.info(
                "model.attention=none (the distracted model) has no attention weights: "
                "no alignment heatmaps or AER are logged"
            )
        # Encoder self-attention maps (self_attention/<n>) when the encoder has them.
        self.encoder = model.encoder if isinstance(model.encoder, SelfAttentionEncoder) else None
        self.examples: list[int] | None = None
        self.signature_logged = False

    def training(self, step: int, loss: float, lr: float, tokens_per_sec: float) -> None:
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)
        self.writer.add_scalar("train/tokens_per_sec", tokens_per_sec, step)

    def skipped_update(self, step: int, skipped: int, result: UpdateResult) -> None:
        """An update with a non-finite loss or gradient was skipped (``skipped`` so far)."""
        self.writer.add_scalar("train/skipped_updates", skipped, step)
        log.warning(
            "step %d: non-finite loss or gradient (loss %s, gradient norm %s), update skipped "
            "(%d so far; trainer.max_skipped_in_a_row in a row stop the run)",
            step,
            result.loss_sum,
            result.grad_norm,
            skipped,
        )

    def validation(self, step: int, result: EvalResult, best_bleu: float) -> None:
        """Dev scores at ``step`` and the best dev BLEU so far (the run's HParams metric)."""
        for name, value in result.metrics.items():
            self.writer.add_scalar(f"valid/{name}", value, step)
        self.writer.add_scalar("valid/best_bleu", best_bleu, step)
        for bucket, value in result.bleu_by_length.items():
            self.writer.add_scalar(f"valid/bleu_by_len/{bucket}", value, step)
        if not self.signature_logged:
            self.writer.add_text("sacrebleu_signature", result.signature, step)
            self.signature_logged = True
        self.writer.add_text(
            "samples", samples_markdown(result.translations[: self.cfg.viz.num_samples]), step
        )
        if self.draws_alignments:
            self.alignments(step, result.translations)
        if self.encoder is not None:
            self.self_attention(step, result.translations)
        self.writer.flush()

    def alignments(self, step: int, translations: Sequence[Translation]) -> None:
        """Heatmaps of the fixed example set: TensorBoard images and PNG+npz on disk."""
        if self.examples is None:
            self.examples = choose_examples(translations, list(self.cfg.viz.examples))
        directory = self.run_dir / "alignments" / f"step_{step:07d}"
        for n, index in enumerate(self.examples):
            try:
                labels, weights, gold = self.alignment_inputs(translations[index])
                fig = plot_alignment(
                    weights,
                    labels[0],
                    labels[1],
                    sure=gold[0],
                    possible=gold[1],
                    font=self.cfg.viz.font,
                    title=f"dev {translations[index].index + 1}, step {step}",
                )
                png = figure_to_png(fig)
                self.writer.add_image(
                    f"alignment/{n}", png_to_image_array(png), step, dataformats="HWC"
                )
                self.alignment_parts(step, n, translations[index].index, labels, weights, gold)
                save_alignment(
                    directory,
                    f"dev_{translations[index].index + 1}",
                    weights,
                    labels[0],
                    labels[1],
                    png,
                )
                if self.transformer is not None:
                    self.layer_heads(step, n, translations[index], labels, directory)
            except Exception:  # a plot must never stop training
                log.exception("could not draw the alignment of dev example %d", index)

    def alignment_parts(
        self,
        step: int,
        n: int,
        dev_index: int,
        labels: tuple[list[str], list[str]],
        weights: np.ndarray,
        gold: tuple[set[tuple[int, int]], set[tuple[int, int]]],
    ) -> None:
        """A long sentence's heatmap again in parts of at most ``PART_COLUMNS`` source pieces
        (``alignment/<n>/<k>``): TensorBoard shrinks an image to its card, and only a few
        columns keep their labels readable there."""
        parts = column_parts(len(labels[0]))
        if len(parts) == 1:
            return
        for k, part in enumerate(parts, start=1):

            def inside(cells: set[tuple[int, int]], part: slice = part) -> set[tuple[int, int]]:
                return {(s - part.start, t) for s, t in cells if part.start <= s < part.stop}

            fig = plot_alignment(
                weights[:, part],
                labels[0][part],
                labels[1],
                sure=inside(gold[0]),
                possible=inside(gold[1]),
                font=self.cfg.viz.font,
                title=f"dev {dev_index + 1}, step {step}: source pieces "
                f"{part.start + 1}–{part.stop} of {len(labels[0])}",
            )
            image = png_to_image_array(figure_to_png(fig))
            self.writer.add_image(f"alignment/{n}/{k}", image, step, dataformats="HWC")

    @torch.no_grad()
    def layer_heads(
        self,
        step: int,
        n: int,
        translation: Translation,
        labels: tuple[list[str], list[str]],
        directory: Path,
    ) -> None:
        """A Transformer's cross-attention, every layer × head, on the output it wrote
        (teacher-forcing it gives the weights the search saw): ``alignment_heads/<n>``."""
        (ids,) = self.data.source_tokenizer.encode([translation.source])
        tokens = translation.output.tokens
        batch = collate([ids], [tokens[:-1]], [0]).to(next(self.model.parameters()).device)
        assert self.transformer is not None, "no Transformer decoder"
        layers = self.transformer.cross_attention(batch.tgt_in, self.model.encode(batch))
        grid = torch.stack([layer[0] for layer in layers]).transpose(1, 2)  # (L, heads, tgt, src)
        grid = grid[:, :, : len(tokens)].float().cpu().numpy()
        chosen = self.transformer.alignment_index
        fig = plot_attention_grid(
            grid,
            labels[0],
            labels[1],
            font=self.cfg.viz.font,
            title=f"dev {translation.index + 1}, step {step}: cross-attention per layer and head\n"
            f"(alignment/{n} shows layer {chosen}, mean of its heads)",
        )
        png = figure_to_png(fig)
        self.writer.add_image(
            f"alignment_heads/{n}", png_to_image_array(png), step, dataformats="HWC"
        )
        atomic_write_bytes(directory / f"dev_{translation.index + 1}_heads.png", png)

    @torch.no_grad()
    def self_attention(self, step: int, translations: Sequence[Translation]) -> None:
        """Top encoder layer's self-attention (mean over heads) for the same example sentences:
        TensorBoard images ``self_attention/<n>`` and PNG+npz beside the alignment heatmaps."""
        assert self.encoder is not None, "no self-attention encoder"
        if self.examples is None:
            self.examples = choose_examples(translations, list(self.cfg.viz.examples))
        directory = self.run_dir / "alignments" / f"step_{step:07d}"
        device = next(self.encoder.parameters()).device
        was_training = self.encoder.training
        self.encoder.eval()
        for n, index in enumerate(self.examples):
            try:
                (ids,) = self.data.source_tokenizer.encode([translations[index].source])
                labels = [*self.data.source_tokenizer.pieces(ids), "</s>"]
                src = collate([ids], None, [0]).src.to(device)
                top = self.encoder.attention_maps(src)[-1]  # (1, heads, src_len, src_len)
                weights = top[0].mean(dim=0).float().cpu().numpy()
                heads = top.size(1)
                fig = plot_alignment(
                    weights,
                    labels,
                    labels,
                    font=self.cfg.viz.font,
                    title=f"dev {translations[index].index + 1}, step {step}, "
                    f"encoder layer {len(self.encoder.layers)}, mean of {heads} heads",
                    axis_labels=("attended source piece (key)", "source piece (query)"),
                )
                png = figure_to_png(fig)
                self.writer.add_image(
                    f"self_attention/{n}", png_to_image_array(png), step, dataformats="HWC"
                )
                name = f"dev_{translations[index].index + 1}_self_attention"
                save_alignment(directory, name, weights, labels, labels, png)
            except Exception:  # a plot must never stop training
                log.exception("could not draw the self-attention of dev example %d", index)
        self.encoder.train(was_training)

    def alignment_inputs(
        self, translation: Translation
    ) -> tuple[tuple[list[str], list[str]], np.ndarray, tuple[set, set]]:
        """Piece labels, (target, source) weights and gold cells in piece coordinates."""
        source_ids, spans = self.data.source_tokenizer.piece_char_spans(translation.source)
        source_labels = [*self.data.source_tokenizer.pieces(source_ids), "</s>"]
        tokens = translation.output.tokens
        target_labels = self.data.target_tokenizer.pieces(tokens)
        if tokens and tokens[-1] == EOS_ID:
            target_labels[-1] = "</s>"
        assert translation.output.weights is not None, "attention model without weights"
        weights = translation.output.weights.mean(dim=1).numpy()
        return (source_labels, target_labels), weights, self.gold_cells(translation, spans)

    def gold_cells(
        self, translation: Translation, source_spans: list[tuple[int, int]]
    ) -> tuple[set, set]:
        """Gold word links as (source piece, target piece) cells, when the output is the reference.

        Gold links belong to the reference's words; drawn over a different output they would
        mislead, so they are drawn only where the output equals the reference.
        """
        example = self.data.splits["dev"].examples[translation.index]
        if example.gold is None or translation.hypothesis != example.target:
            return set(), set()
        source_words = piece_word_indices_by_spans(source_spans, example.gold.source_words)
        target_words = piece_word_indices_by_boundaries(
            self.data.target_tokenizer.pieces(translation.output.tokens)
        )

        def cells(links: frozenset[tuple[int, int]]) -> set[tuple[int, int]]:
            return {
                (s, t)
                for s, sw in enumerate(source_words)
                for t, tw in enumerate(target_words)
                if (sw, tw) in links
            }

        return cells(example.gold.sure), cells(example.gold.possible - example.gold.sure)

    def test(self, split: str, result: EvalResult) -> None:
        prefix = "test" if split == "test" else f"test_{split}"
        for name, value in result.metrics.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, 0)
        for bucket, value in result.bleu_by_length.items():
            self.writer.add_scalar(f"{prefix}/bleu_by_len/{bucket}", value, 0)

    def close_interrupted(self) -> None:
        """Flush and close the event file of a run stopped by a signal (no final results)."""
        self.writer.close()

    def close(self, final: dict[str, Any]) -> None:
        """HParams entry: this run's settings beside the tags of its final numbers (HPARAMS
        shows each tag's last value), then flush and close."""
        metrics = {"valid/best_bleu": final["best_dev_bleu"]}
        probes = [("word_order", name) for name in WORD_ORDER_METRICS]
        chosen = [(split, name) for split in ("test", "long") for name in ("bleu", "chrf", "aer")]
        for split, name in [*chosen, *probes, ("long_range", LONG_RANGE_METRIC)]:
            if name in final.get(split, {}):
                prefix = "test" if split == "test" else f"test_{split}"
                metrics[f"{prefix}/{name}"] = final[split][name]
        params = hparam_values(self.cfg)
        params["precision_used"] = self.precision.used  # trainer.precision may say auto
        for summary in hparams(params, metrics):
            self.writer.file_writer.add_summary(summary)
        self.writer.close()


def hparam_values(cfg: DictConfig) -> dict[str, Any]:
    """HPARAM_KEYS, and the settings of the encoder, decoder and scorer the run chose
    (``model.encoder.rnn.hidden``, ...): another family's are not this run's."""
    params = {key: _lookup(cfg, key) for key in HPARAM_KEYS}
    for part in ("encoder", "decoder", "attention"):
        group = cfg.model[part]
        own = group.get(group.name)  # None: a scorer with no settings of its own
        for key, value in (own or {}).items():
            if value is not None:
                params[f"model.{part}.{group.name}.{key}"] = value
    return params


def _lookup(cfg: DictConfig, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def choose_examples(translations: Sequence[Translation], configured: list[int]) -> list[int]:
    """Configured dev positions, or by default three short-to-medium sources and the longest."""
    if configured:
        valid = [i for i in configured if 0 <= i < len(translations)]
        if len(valid) < len(configured):
            log.warning(
                "viz.examples %s: only %s are within the %d dev sources",
                configured,
                valid,
                len(translations),
            )
        return valid
    by_length = sorted(range(len(translations)), key=lambda i: (len(translations[i].source), i))
    picks = [by_length[int(q * (len(by_length) - 1))] for q in (0.2, 0.4, 0.6, 1.0)]
    return list(dict.fromkeys(picks))


def samples_markdown(translations: Sequence[Translation]) -> str:
    """A markdown table of source, reference(s) and hypothesis for TensorBoard's text panel."""
    rows = ["| source | reference(s) | hypothesis |", "|---|---|---|"]
    for t in translations:
        refs = "<br>".join(_escape(r) for r in t.references)
        rows.append(f"| {_escape(t.source)} | {refs} | {_escape(t.hypothesis)} |")
    return "\n".join(rows)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def tensorboard_hint(logdir: Path) -> str:
    """The last words of a run: the commands that show ``logdir`` in TensorBoard."""
    quoted = shlex.quote(str(logdir))
    return (
        f"TensorBoard logs are in {logdir}. See them with `make tensorboard LOGDIR={quoted}` "
        f"in {PROJECT_ROOT} or `{shlex.quote(sys.executable)} -m tensorboard.main --logdir "
        f"{quoted}`, then open http://localhost:6006"
    )
