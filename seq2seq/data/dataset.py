"""From ``data.*`` config to tokenized splits ready for batching."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seq2seq.config import DataConfig
from seq2seq.data.batching import Batch, collate, slice_into_batches
from seq2seq.data.corpus import (
    SPLITS,
    Corpus,
    CorpusError,
    CorpusPart,
    Example,
    read_parallel,
)
from seq2seq.data.tatoeba import ensure_tatoeba
from seq2seq.data.tokenizer import SHARED, SubwordTokenizer, train_tokenizer

log = logging.getLogger(__name__)


def load_corpus(cfg: DataConfig) -> Corpus:
    """Read (or generate) every split named by the config, in the configured direction."""
    if cfg.name == "synthetic":
        return _synthetic_corpus(cfg)
    if cfg.name == "tatoeba":
        if not cfg.dir:
            raise ValueError("data=tatoeba needs data.dir")
        directory = Path(cfg.dir).expanduser()
        ensure_tatoeba(directory, cfg.url, cfg.sha256)
        paths = {split: directory / f"{split}.tsv" for split in SPLITS}
    elif cfg.name == "tsv":
        missing = [split for split in SPLITS if not getattr(cfg, split)]
        if missing:
            raise ValueError(f"data=tsv needs a path for data.{', data.'.join(missing)}")
        paths = {split: getattr(cfg, split) for split in SPLITS}
    else:
        raise ValueError(f"data.name must be synthetic, tatoeba or tsv, got {cfg.name!r}")
    if cfg.word_order:
        paths["word_order"] = Path(cfg.word_order).expanduser()
    corpus = Corpus({}, cfg.source_lang, cfg.target_lang)
    for split, path in paths.items():
        if split == "train" and is_weighted_list(path):
            read_weighted_corpora(path, cfg, corpus)
            continue
        examples, skipped = read_parallel(
            path, cfg.columns, cfg.source_lang, cfg.target_lang, cfg.on_malformed
        )
        corpus.splits[split] = examples
        corpus.skipped[split] = skipped
    pairs = corpus.splits.get("word_order", [])
    if len(pairs) % 2:
        raise CorpusError(
            f"{paths['word_order']}: {len(pairs)} sentence pairs; data.word_order needs word-order "
            "pairs, two consecutive lines each, so an even number"
        )
    return corpus


def is_weighted_list(spec: object) -> bool:
    """``data.train`` as a list of corpora (``{path: ..., weight: ...}`` each), not one corpus."""
    return (
        isinstance(spec, Sequence)
        and not isinstance(spec, str)
        and any(isinstance(item, Mapping) for item in spec)
    )


def read_weighted_corpora(
    spec: Sequence[Mapping[str, Any]], cfg: DataConfig, corpus: Corpus
) -> None:
    """Read each ``{path, weight, name}`` of ``data.train`` into ``corpus``'s train split, each
    example tagged with its corpus, and record the parts (OpenNMT-py's corpus ``weight``)."""
    examples: list[Example] = []
    skipped = 0
    for index, item in enumerate(spec):
        where = f"data.train[{index}]"
        if not isinstance(item, Mapping) or "path" not in item:
            raise ValueError(
                f"{where}: each corpus of a weighted list is {{path: ..., weight: ...}}"
            )
        unknown = set(item) - {"path", "weight", "name"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; use path, weight, name")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ValueError(f"{where}.weight must be a positive number, got {weight!r}")
        path = item["path"]
        name = str(item.get("name") or (path if isinstance(path, str) else "+".join(path)))
        part, part_skipped = read_parallel(
            path, cfg.columns, cfg.source_lang, cfg.target_lang, cfg.on_malformed, corpus=index
        )
        examples += part
        skipped += part_skipped
        corpus.train_parts.append(CorpusPart(name, float(weight), len(part)))
    corpus.splits["train"] = examples
    corpus.skipped["train"] = skipped


def _synthetic_corpus(cfg: DataConfig) -> Corpus:
    from seq2seq.data.synthetic import generate_splits

    s = cfg.synthetic
    generated = generate_splits(
        train=s.train_size,
        dev=s.dev_size,
        test=s.test_size,
        long_test=s.long_test_size,
        seed=s.seed,
        max_clauses=s.max_clauses,
        long_min_clauses=s.long_min_clauses,
        long_max_clauses=s.long_max_clauses,
        word_order_train=s.word_order_train,
        word_order=s.word_order_size,
        long_range_train=s.long_range_train,
        long_range=s.long_range_size,
    )
    direction = (cfg.source_lang, cfg.target_lang)
    if direction not in (("zh", "en"), ("en", "zh")):
        raise ValueError(f"the synthetic corpus is zh/en, not {direction[0]}→{direction[1]}")
    forward = direction == ("zh", "en")
    if not forward:  # the probed pronoun is English's; in Chinese it is left out
        generated.pop("long_range", None)
    splits = {
        split: [
            Example(p.source, p.target, f"synthetic/{split}:{i + 1}", p)
            if forward
            else Example(p.target, p.source, f"synthetic/{split}:{i + 1}")
            for i, p in enumerate(pairs)
        ]
        for split, pairs in generated.items()
    }
    return Corpus(splits, cfg.source_lang, cfg.target_lang, has_gold_alignments=forward)


@dataclass
class TokenizedSplit:
    """A split's examples with their subword ids (source without EOS, target without BOS/EOS)."""

    name: str
    examples: list[Example]
    source_ids: list[list[int]]
    target_ids: list[list[int]]
    # the weighted corpora its examples come from (Example.corpus indexes them); empty: one
    parts: list[CorpusPart] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, indices: list[int]) -> Batch:
        return collate(
            [self.source_ids[i] for i in indices], [self.target_ids[i] for i in indices], indices
        )

    def eval_batches(self, max_sentences: int) -> Iterator[Batch]:
        """Length-sorted batches (little padding) covering every example once, in a fixed order."""
        order = sorted(range(len(self)), key=lambda i: len(self.source_ids[i]))
        lengths = [1] * len(self)
        for indices in slice_into_batches(order, lengths, "sentences", max_sentences):
            yield self.batch(indices)


@dataclass
class TrainingData:
    """What a training run reads: both tokenizers and every tokenized split."""

    source_tokenizer: SubwordTokenizer
    target_tokenizer: SubwordTokenizer
    splits: dict[str, TokenizedSplit]
    has_gold_alignments: bool


def build_tokenizers(corpus: Corpus, cfg: DataConfig) -> tuple[SubwordTokenizer, SubwordTokenizer]:
    """One sentencepiece model per language, trained on the training split only (the source's
    converting traditional Chinese to simplified where ``data.simplify_source`` says so); or,
    with ``data.shared_vocab_size``, one model trained on both sides, used for both."""
    train = corpus.splits["train"]

    def trained(texts: list[str], lang: str, size: int, simplify: bool) -> SubwordTokenizer:
        return train_tokenizer(
            texts,
            lang,
            size,
            cfg.spm_model_type,
            Path(cfg.cache_dir).expanduser(),
            simplify=simplify,
            sample=cfg.spm_sample,
        )

    sources, targets = [e.source for e in train], [e.target for e in train]
    if cfg.shared_vocab_size is not None:
        lang = f"{corpus.source_lang}{SHARED}{corpus.target_lang}"
        shared = trained(sources + targets, lang, cfg.shared_vocab_size, cfg.simplify_source)
        return shared, shared
    source = trained(sources, corpus.source_lang, cfg.src_vocab_size, cfg.simplify_source)
    return source, trained(targets, corpus.target_lang, cfg.tgt_vocab_size, False)


def tokenize_split(
    name: str,
    examples: list[Example],
    source: SubwordTokenizer,
    target: SubwordTokenizer,
    max_length: int | None = None,
    over_long: str = "drop",
) -> TokenizedSplit:
    """Encode a split. With ``max_length``, pairs longer than that on either side are dropped
    (``over_long="drop"``: training) or cut to that length (``"truncate"``: dev, test and
    evaluation, where every sentence must be translated but memory must stay bounded); either
    way the count is logged."""
    source_ids = source.encode([e.source for e in examples])
    target_ids = target.encode([e.target for e in examples])
    if max_length is None:
        return TokenizedSplit(name, examples, source_ids, target_ids)
    if over_long == "truncate":
        source_ids = truncate(source_ids, max_length, f"{name} sources")
        target_ids = truncate(target_ids, max_length, f"{name} targets (for the loss)")
        return TokenizedSplit(name, examples, source_ids, target_ids)
    assert over_long == "drop", f"over_long must be drop or truncate, got {over_long!r}"
    keep = [
        i
        for i in range(len(examples))
        if len(source_ids[i]) <= max_length and len(target_ids[i]) <= max_length
    ]
    if len(keep) < len(examples):
        log.info(
            "%s: filtered %d of %d pairs longer than data.max_length=%d tokens",
            name,
            len(examples) - len(keep),
            len(examples),
            max_length,
        )
    if not keep:
        origin = examples[0].origin.rsplit(":", 1)[0] if examples else name
        raise CorpusError(
            f"{origin}: all {len(examples)} pairs of the {name} split are longer than "
            f"data.max_length={max_length} subword tokens; raise data.max_length"
        )
    return TokenizedSplit(
        name,
        [examples[i] for i in keep],
        [source_ids[i] for i in keep],
        [target_ids[i] for i in keep],
    )


def truncate(ids: list[list[int]], max_length: int, what: str) -> list[list[int]]:
    """Cut every sequence to ``max_length`` tokens, warning with the count of those cut."""
    cut = sum(len(sequence) > max_length for sequence in ids)
    if cut:
        log.warning(
            "%s: truncated %d of %d longer than data.max_length=%d subword tokens",
            what,
            cut,
            len(ids),
            max_length,
        )
    return [sequence[:max_length] for sequence in ids]
