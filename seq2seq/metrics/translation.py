"""BLEU and chrF with sacrebleu on detokenized text, against all references of each source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF


@dataclass
class ReferenceSets:
    """Unique sources, each with every reference the data gives it (multi-reference scoring)."""

    sources: list[str]
    references: list[list[str]]
    first_index: list[int]  # where each unique source first occurs in the split


def group_references(sources: Sequence[str], references: Sequence[str]) -> ReferenceSets:
    """Group repeated sources; a source translated several ways keeps all its translations."""
    position: dict[str, int] = {}
    grouped = ReferenceSets([], [], [])
    for index, (source, reference) in enumerate(zip(sources, references, strict=True)):
        if source not in position:
            position[source] = len(grouped.sources)
            grouped.sources.append(source)
            grouped.references.append([])
            grouped.first_index.append(index)
        refs = grouped.references[position[source]]
        if reference not in refs:
            refs.append(reference)
    return grouped


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's layout: one stream per reference slot, ``None`` where a source has fewer."""
    width = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def translation_scores(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], target_lang: str = "en"
) -> dict[str, float | str]:
    """Corpus BLEU and chrF with their sacrebleu signatures.

    Chinese output is scored with sacrebleu's ``zh`` tokenizer, everything else with ``13a``.
    """
    streams = reference_streams(references)
    bleu = _bleu(target_lang)
    chrf = CHRF()
    return {
        "bleu": bleu.corpus_score(list(hypotheses), streams).score,
        "chrf": chrf.corpus_score(list(hypotheses), streams).score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def _bleu(target_lang: str) -> BLEU:
    return BLEU(tokenize="zh" if target_lang == "zh" else "13a")


def length_bucket_names(bounds: Sequence[int]) -> list[str]:
    """Names such as ``01-10``, ``11-20``, ``21+`` for upper bounds ``[10, 20]``."""
    width = len(str(max(bounds))) if bounds else 1
    names, low = [], 1
    for high in bounds:
        names.append(f"{low:0{width}d}-{high:0{width}d}")
        low = high + 1
    names.append(f"{low:0{width}d}+")
    return names


def bleu_by_length(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    source_lengths: Sequence[int],
    bounds: Sequence[int],
    target_lang: str = "en",
) -> dict[str, float]:
    """BLEU per source-length bucket (length in source subword tokens); empty buckets omitted."""
    names = length_bucket_names(bounds)
    members: dict[str, list[int]] = {name: [] for name in names}
    for index, length in enumerate(source_lengths):
        bucket = next((k for k, high in enumerate(bounds) if length <= high), len(bounds))
        members[names[bucket]].append(index)
    bleu = _bleu(target_lang)
    return {
        name: bleu.corpus_score(
            [hypotheses[i] for i in rows], reference_streams([references[i] for i in rows])
        ).score
        for name, rows in members.items()
        if rows
    }
