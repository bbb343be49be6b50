"""Scoring a model on a split: loss, greedy or beam translations, BLEU/chrF, BLEU by length, AER."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from seq2seq.data.dataset import TokenizedSplit
from seq2seq.data.synthetic.links import LongRangePair
from seq2seq.data.tokenizer import SubwordTokenizer
from seq2seq.device import autocast
from seq2seq.metrics.alignment import (
    corpus_alignment_error_rate,
    hard_links_from_attention,
    piece_word_indices_by_boundaries,
    piece_word_indices_by_spans,
)
from seq2seq.metrics.long_range import long_range_accuracy
from seq2seq.metrics.loss import sequence_loss
from seq2seq.metrics.translation import bleu_by_length, group_references, translation_scores
from seq2seq.metrics.word_order import word_order_accuracy
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.search import Hypothesis, SearchSettings, Translatable, translate_batch


@dataclass
class Translation:
    """One unique source of a split, its references and the model's output."""

    index: int  # position of the source's first occurrence in the split
    source: str
    references: list[str]
    hypothesis: str
    output: Hypothesis


@dataclass
class EvalResult:
    loss: float
    metrics: dict[str, float]
    bleu_by_length: dict[str, float]
    signature: str
    translations: list[Translation] = field(default_factory=list)


@torch.no_grad()
def translate_split(
    model: Translatable,
    split: TokenizedSplit,
    target_tokenizer: SubwordTokenizer,
    device: torch.device,
    batch_size: int,
    search: SearchSettings,
) -> list[Translation]:
    """Translations of every unique source of ``split``, in order of first occurrence.

    Greedy for beam size 1, else the best hypothesis of beam search (its attention is what the
    heatmaps then show); ``search.nbest`` is ignored (one translation per source).
    """
    search = search.replace(nbest=1)
    model.eval()
    grouped = group_references(
        [e.source for e in split.examples], [e.target for e in split.examples]
    )
    unique = TokenizedSplit(
        split.name,
        [split.examples[i] for i in grouped.first_index],
        [split.source_ids[i] for i in grouped.first_index],
        [split.target_ids[i] for i in grouped.first_index],
    )
    outputs: list[Hypothesis | None] = [None] * len(unique)
    rows = batch_size * search.beam_size
    with model.search_scope(search.precision, rows):
        for batch in unique.eval_batches(batch_size):
            nbest_lists = translate_batch(model, batch.to(device), search)
            for row, (hypothesis,) in zip(batch.indices, nbest_lists, strict=True):
                outputs[row] = hypothesis
    translations = []
    for k, output in enumerate(outputs):
        assert output is not None, "a source was not decoded"
        translations.append(
            Translation(
                grouped.first_index[k],
                grouped.sources[k],
                grouped.references[k],
                target_tokenizer.decode(output.tokens),
                output,
            )
        )
    return translations


@torch.no_grad()
def teacher_forced_pass(
    model: Seq2Seq,
    split: TokenizedSplit,
    device: torch.device,
    batch_size: int,
    precision: str = "fp32",
) -> tuple[float, list[dict[int, np.ndarray]]]:
    """Mean token loss over the split, and the attention weights on each reference per decoder
    layer (an RNN decoder has one, a Transformer one per layer).

    Weights are (reference pieces + EOS, source pieces + EOS), averaged over heads; no layers
    for a model without attention.
    """
    model.eval()
    total, tokens = 0.0, 0
    layers: list[dict[int, np.ndarray]] = []
    for batch in split.eval_batches(batch_size):
        batch = batch.to(device)
        with autocast(device, precision):
            logits, attention = model.decoder.run_layers(batch.tgt_in, model.encode(batch))
        total += float(sequence_loss(logits, batch.tgt_out))
        tokens += batch.target_tokens
        if attention[0] is None:
            continue
        layers = layers or [{} for _ in attention]
        for weights, layer in zip(layers, attention, strict=True):
            mean_heads = layer.mean(dim=2).float().cpu().numpy()  # (batch, tgt, src)
            for row, index in enumerate(batch.indices):
                tgt_len = len(split.target_ids[index]) + 1
                src_len = int(batch.src_lengths[row])
                weights[index] = mean_heads[row, :tgt_len, :src_len]
    return total / max(tokens, 1), layers


def alignment_error_rate(
    split: TokenizedSplit,
    weights: dict[int, np.ndarray],
    source_tokenizer: SubwordTokenizer,
    target_tokenizer: SubwordTokenizer,
) -> float:
    """Corpus AER of the hard links read off the teacher-forced attention, against gold links."""
    items = []
    for index, example in enumerate(split.examples):
        gold = example.gold
        assert gold is not None, f"{example.origin} has no gold alignment"
        _, spans = source_tokenizer.piece_char_spans(example.source)
        source_words = piece_word_indices_by_spans(spans, gold.source_words) + [-1]
        pieces = target_tokenizer.pieces(split.target_ids[index]) + ["</s>"]
        links = hard_links_from_attention(
            weights[index], source_words, piece_word_indices_by_boundaries(pieces)
        )
        items.append((links, gold.sure, gold.possible))
    return corpus_alignment_error_rate(items)


def evaluate(
    model: Seq2Seq,
    split: TokenizedSplit,
    source_tokenizer: SubwordTokenizer,
    target_tokenizer: SubwordTokenizer,
    device: torch.device,
    *,
    target_lang: str,
    length_buckets: list[int],
    batch_size: int,
    search: SearchSettings,
    with_alignment: bool,
    word_order: bool = False,
    choose_alignment_layer: bool = False,
    long_range: bool = False,
) -> EvalResult:
    """Everything a validation or the final test reports for one split (with ``word_order``,
    a split of word-order pairs: its exact-match accuracies too; with ``long_range``, the
    synthetic long-range split: its pronoun accuracy by distance).

    With several decoder layers (a Transformer) and ``with_alignment``, each layer's AER is
    reported as ``aer_layer<k>`` and ``aer`` is the alignment layer's; ``choose_alignment_layer``
    (on dev only) first makes the layer with the lowest AER the alignment layer, which the
    heatmaps, translate.py --alignments and checkpoints then use.
    """
    loss, layers = teacher_forced_pass(model, split, device, batch_size, search.precision)
    metrics: dict[str, float] = {"loss": loss}
    if with_alignment and layers:
        aers = [
            alignment_error_rate(split, weights, source_tokenizer, target_tokenizer)
            for weights in layers
        ]
        if len(aers) > 1:
            metrics |= {f"aer_layer{k}": aer for k, aer in enumerate(aers)}
            if choose_alignment_layer:
                model.decoder.alignment_layer.fill_(int(np.argmin(aers)))
        metrics["aer"] = aers[model.decoder.alignment_index]
    translations = translate_split(model, split, target_tokenizer, device, batch_size, search)
    scores, by_length = score_translations(translations, split, target_lang, length_buckets)
    metrics |= {"bleu": float(scores["bleu"]), "chrf": float(scores["chrf"])}
    if word_order:
        metrics |= word_order_scores(translations, split)
    if long_range:
        metrics |= long_range_scores(translations, split)
    return EvalResult(loss, metrics, by_length, str(scores["bleu_signature"]), translations)


def score_translations(
    translations: list[Translation],
    split: TokenizedSplit,
    target_lang: str,
    length_buckets: list[int],
) -> tuple[dict[str, float | str], dict[str, float]]:
    """Multi-reference BLEU/chrF with signatures, and BLEU per source-length bucket."""
    hypotheses = [t.hypothesis for t in translations]
    references = [t.references for t in translations]
    by_length = bleu_by_length(
        hypotheses,
        references,
        [len(split.source_ids[t.index]) for t in translations],
        length_buckets,
        target_lang,
    )
    return translation_scores(hypotheses, references, target_lang), by_length


def word_order_scores(translations: list[Translation], split: TokenizedSplit) -> dict[str, float]:
    """:func:`word_order_accuracy` of a split of word-order pairs, each entry against its own
    reference (translations come one per unique source), with which pairs are the same bag of
    source pieces."""
    by_source = {t.source: t.hypothesis for t in translations}
    bags = [Counter(ids) for ids in split.source_ids]
    return word_order_accuracy(
        [by_source[e.source] for e in split.examples],
        [e.target for e in split.examples],
        [a == b for a, b in zip(bags[0::2], bags[1::2], strict=True)],
    )


def long_range_scores(translations: list[Translation], split: TokenizedSplit) -> dict[str, float]:
    """:func:`long_range_accuracy` of the synthetic long-range split, each entry scored by the
    rule it was generated with (its gold :class:`LongRangePair`)."""
    by_source = {t.source: t.hypothesis for t in translations}
    pairs = [e.gold for e in split.examples]
    assert all(isinstance(p, LongRangePair) for p in pairs), "not a long-range split"
    return long_range_accuracy([by_source[e.source] for e in split.examples], pairs)
