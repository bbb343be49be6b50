"""Using a trained checkpoint: load it, translate raw sentences, score a parallel TSV.

A checkpoint is self-contained (config, weights, both sentencepiece models), so nothing here
reads the training data or the run directory.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from seq2seq.checkpoint import (
    CheckpointError,
    check_finite_weights,
    check_same_vocabularies,
    load_checkpoint,
)
from seq2seq.config.saved import checkpoint_config
from seq2seq.data.batching import collate
from seq2seq.data.corpus import read_parallel_tsv
from seq2seq.data.dataset import tokenize_split, truncate
from seq2seq.data.tokenizer import EOS_ID, SubwordTokenizer
from seq2seq.device import PrecisionChoice, choose_precision, select_device
from seq2seq.evaluation import (
    Translation,
    score_translations,
    translate_split,
    word_order_scores,
)
from seq2seq.fast.kernels import accelerate
from seq2seq.files import atomic_write_bytes
from seq2seq.metrics.alignment import (
    SPECIAL_PIECES,
    Link,
    hard_links_from_attention,
    piece_word_indices_by_boundaries,
)
from seq2seq.model.ensemble import Ensemble
from seq2seq.model.seq2seq import build_model
from seq2seq.provenance import provenance
from seq2seq.search import Beam, Hypothesis, SearchSettings, Translatable, translate_batch

# Written without spaces between words: every subword piece counts as a word of its own.
UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th"})
WORD_BOUNDARY = "\u2581"  # sentencepiece's "▁"


class InferenceError(ValueError):
    """A request this checkpoint, input or machine cannot serve; the message says which."""


@dataclass
class Alignment:
    """Attention of one translation: what the heatmap draws and the hard word links."""

    source_labels: list[str]  # source pieces and "</s>"
    target_labels: list[str]  # output pieces, "</s>" for EOS
    weights: np.ndarray  # (target pieces, source pieces), mean over heads
    links: set[Link]  # (source word, target word)


@dataclass
class Translator:
    """A checkpoint's model (or an ensemble's), tokenizers and config, ready to translate."""

    model: Translatable
    source_tokenizer: SubwordTokenizer
    target_tokenizer: SubwordTokenizer
    config: DictConfig
    device: torch.device
    precision_choice: PrecisionChoice = PrecisionChoice("fp32", "fp32", "asked for")

    @property
    def precision(self) -> str:
        """fp32 | bf16 | fp16: autocast of the model's matrix products."""
        return self.precision_choice.used

    @property
    def source_lang(self) -> str:
        return str(self.config.data.source_lang)

    @property
    def target_lang(self) -> str:
        return str(self.config.data.target_lang)

    def search_settings(self, **choices: Any) -> SearchSettings:
        """The search the checkpoint's config chose, in this translator's precision, with
        ``choices`` that are not None (``beam_size=5``, ``alpha=None``: the config's α)."""
        return SearchSettings.from_config(self.config, self.precision, **choices)

    def translate(
        self,
        sources: Sequence[str],
        search: SearchSettings | None = None,
        batch_size: int = 64,
        observe: Callable[[Beam], None] | None = None,
    ) -> list[list[Hypothesis]]:
        """The n-best hypotheses of each source, in input order; a blank source gets none.

        ``search`` defaults to :meth:`search_settings`: the checkpoint's own. ``observe`` sees
        each batch's beam after every step of beam search (the explorer's step-through).
        """
        search = search or self.search_settings()
        ids = self.encode_sources(sources)
        # Sorting by length puts similar lengths in one batch: little padding.
        order = sorted((i for i, s in enumerate(sources) if s.strip()), key=lambda i: len(ids[i]))
        results: list[list[Hypothesis]] = [[] for _ in sources]
        self.model.eval()
        rows = batch_size * search.beam_size
        with self.model.search_scope(search.precision, rows):
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                batch = collate([ids[i] for i in chunk], None, chunk).to(self.device)
                nbest_lists = translate_batch(self.model, batch, search, observe)
                for index, hypotheses in zip(batch.indices, nbest_lists, strict=True):
                    results[index] = hypotheses
        return results

    def encode_sources(self, sources: Sequence[str], quiet: bool = False) -> list[list[int]]:
        """Subword ids, cut to the ``data.max_length`` the model was trained with (counted)."""
        ids = self.source_tokenizer.encode(sources)
        max_length = int(self.config.data.max_length)
        if quiet:
            return [sequence[:max_length] for sequence in ids]
        return truncate(ids, max_length, "input sentences")

    def detokenize(self, hypothesis: Hypothesis) -> str:
        return self.target_tokenizer.decode(hypothesis.tokens)

    def alignment(self, source: str, hypothesis: Hypothesis) -> Alignment:
        """Piece labels, head-averaged weights and hard links of ``hypothesis`` for ``source``."""
        if hypothesis.weights is None:
            raise InferenceError("this model has no attention (model=distracted): no alignments")
        (source_ids,) = self.encode_sources([source], quiet=True)
        source_labels = [*self.source_tokenizer.pieces(source_ids), "</s>"]
        target_labels = self.target_tokenizer.pieces(hypothesis.tokens)
        if hypothesis.tokens and hypothesis.tokens[-1] == EOS_ID:
            target_labels[-1] = "</s>"
        weights = hypothesis.weights.mean(dim=1).numpy()
        links = hard_links_from_attention(
            weights,
            piece_word_indices(source_labels, self.source_lang),
            piece_word_indices(target_labels, self.target_lang),
        )
        return Alignment(source_labels, target_labels, weights, links)


def piece_word_indices(pieces: Sequence[str], lang: str) -> list[int]:
    """Word index of each piece (-1 for "</s>" and other specials).

    Space-separated languages: "▁" opens a word, so words are the whitespace words of the
    text. Languages written without spaces: each piece is a word, except a bare "▁" (the
    marker sentencepiece puts before a sentence), which belongs to no word.
    """
    if lang not in UNSPACED_LANGUAGES:
        return piece_word_indices_by_boundaries(pieces)
    indices, count = [], 0
    for piece in pieces:
        if piece in SPECIAL_PIECES or piece == WORD_BOUNDARY:
            indices.append(-1)
        else:
            indices.append(count)
            count += 1
    return indices


def load_translator(path: str | Path, device: str = "auto", precision: str = "auto") -> Translator:
    """Model, tokenizers and config from a checkpoint written by training (``best.pt``).

    ``precision`` auto decodes in bf16 where this machine computes it natively, else in fp32,
    whatever the model was trained in: a model trained in bf16 on an AMX server decodes at
    fp32 speed, not at a fifth of it, on an AVX2 laptop.
    """
    try:
        target_device = select_device(device)
        choice = choose_precision(precision, target_device, "--precision")
    except ValueError as error:
        raise InferenceError(f"--device/--precision: {error}") from error
    state = load_checkpoint(path, map_location=target_device)
    missing = [key for key in ("config", "model", "source_spm", "target_spm") if key not in state]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks {', '.join(missing)}")
    config = checkpoint_config(path, state)
    check_finite_weights(path, state["model"])
    try:
        source = SubwordTokenizer(state["source_spm"])
        target = SubwordTokenizer(state["target_spm"])
        model = build_model(config.model, len(source), len(target))
        accelerate(model, config.model.kernels, target_device)
    except (RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path}: unusable config or sentencepiece model ({error})"
        ) from error
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        # torch lists every mismatched tensor; the first says enough.
        problems = [line.strip(" \t.") for line in str(error).splitlines()[1:]] or [str(error)]
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise CheckpointError(
            f"{path}: the weights do not fit the model its config describes ({problems[0]}{more})"
        ) from error
    return Translator(
        model.to(target_device).eval(),
        source,
        target,
        config,
        target_device,
        choice,
    )


def load_ensemble(
    paths: Sequence[str | Path], device: str = "auto", precision: str = "auto"
) -> Translator:
    """One checkpoint's translator, or several checkpoints decoding as one :class:`Ensemble`.

    Their sentencepiece models must be the same (one line names the first that differs); the
    first checkpoint's config says how to decode (length limits, α, beam stop by default).
    """
    translators = [load_translator(path, device, precision) for path in paths]
    first = translators[0]
    for path, translator in zip(paths[1:], translators[1:], strict=True):
        check_same_vocabularies(
            path,
            vocabularies(translator),
            paths[0],
            vocabularies(first),
            "the checkpoints of an ensemble must share both vocabularies",
        )
    if len(translators) == 1:
        return first
    return dataclasses.replace(first, model=Ensemble([t.model for t in translators]).eval())


def vocabularies(translator: Translator) -> dict[str, bytes]:
    return {
        "source_spm": translator.source_tokenizer.model_proto,
        "target_spm": translator.target_tokenizer.model_proto,
    }


@dataclass
class TsvEvaluation:
    translations: list[Translation]  # one per unique source, in order of first occurrence
    report: dict[str, Any]


def evaluate_tsv(
    translator: Translator,
    path: Path,
    search: SearchSettings | None = None,
    direction: tuple[str, str] | None = None,
    batch_size: int | None = None,
    word_order: bool = False,
) -> TsvEvaluation:
    """Translate each unique source of a TSV and score it against all its references.

    ``search`` defaults to the checkpoint's own (:meth:`Translator.search_settings`). Columns
    come from the checkpoint's ``data.columns``; ``direction`` (source, target) must
    be the checkpoint's own, and only says so explicitly. With ``word_order`` the lines are
    word-order pairs (two consecutive lines each), and the report adds their exact-match
    accuracies ``word_order_acc`` and ``word_order_pair_acc``.
    """
    trained = (translator.source_lang, translator.target_lang)
    source_lang, target_lang = direction or trained
    if (source_lang, target_lang) != trained:
        raise InferenceError(
            f"the checkpoint translates {trained[0]}-{trained[1]}, not {source_lang}-{target_lang}"
        )
    columns = list(translator.config.data.columns)
    # Every pair counts in a score: a bad line is fixed, not skipped as training may.
    fix = "correct or remove that line"
    examples, _ = read_parallel_tsv(Path(path), columns, source_lang, target_lang, "error", fix)
    if word_order and len(examples) % 2:
        raise InferenceError(
            f"{path}: {len(examples)} lines; word-order pairs take two consecutive lines each, "
            "so the count must be even"
        )
    split = tokenize_split(
        Path(path).stem,
        examples,
        translator.source_tokenizer,
        translator.target_tokenizer,
        translator.config.data.max_length,
    )
    search = search or translator.search_settings()
    batch_size = batch_size or translator.config.trainer.eval_batch_size
    start = time.perf_counter()
    translations = translate_split(
        translator.model, split, translator.target_tokenizer, translator.device, batch_size, search
    )
    seconds = time.perf_counter() - start
    scores, by_length = score_translations(
        translations, split, target_lang, list(translator.config.data.length_buckets)
    )
    report = {
        "tsv": str(Path(path).resolve()),
        "direction": f"{source_lang}-{target_lang}",
        "pairs": len(examples),
        "sentences": len(translations),
        "beam": search.beam_size,
        "length_penalty": search.alpha,
        "beam_stop": search.stop,
        "bleu": scores["bleu"],
        "chrf": scores["chrf"],
        "signature": scores["bleu_signature"],
        "chrf_signature": scores["chrf_signature"],
        "bleu_by_length": by_length,
        "seconds": seconds,
        "sentences_per_sec": len(translations) / max(seconds, 1e-9),
        # output pieces (EOS included) per second: how CTranslate2 and Marian state CPU speed
        "target_tokens_per_sec": sum(len(t.output.tokens) for t in translations)
        / max(seconds, 1e-9),
        "device": str(translator.device),
        "precision": search.precision,
        "precision_asked": translator.precision_choice.asked,
        **provenance(translator.device),
    }
    if word_order:
        report |= word_order_scores(translations, split)
    return TsvEvaluation(translations, report)


def write_alignment(
    directory: Path, name: str, alignment: Alignment, font: str | None = None
) -> None:
    """``<name>.png`` and ``.npz`` (heatmap, weights, labels) and ``<name>.links``.

    The links file holds one line of ``i-j`` pairs (source word i, target word j, from 0),
    the format of fast_align and Moses.
    """
    # matplotlib takes a second to import; only --alignments needs it.
    from seq2seq.viz.heatmap import figure_to_png, plot_alignment, save_alignment

    figure = plot_alignment(
        alignment.weights, alignment.source_labels, alignment.target_labels, font=font
    )
    png = figure_to_png(figure)
    save_alignment(
        directory, name, alignment.weights, alignment.source_labels, alignment.target_labels, png
    )
    links = " ".join(
        f"{s}-{t}" for s, t in sorted(alignment.links, key=lambda link: (link[1], link[0]))
    )
    atomic_write_bytes(Path(directory) / f"{name}.links", (links + "\n").encode())
