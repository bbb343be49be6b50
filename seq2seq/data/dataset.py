"""From ``data.*`` config to tokenized splits ready for batching."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from seq2seq.config.schema import DataConfig, SyntheticConfig
from seq2seq.data.batching import Batch, collate, slice_into_batches
from seq2seq.data.corpus import (
    SPLITS,
    Corpus,
    CorpusError,
    CorpusPart,
    Example,
    PairReader,
    pair_reader,
    read_parallel,
)
from seq2seq.data.tatoeba import ensure_tatoeba
from seq2seq.data.token_store import (
    FORMAT as STORE_FORMAT,
)
from seq2seq.data.token_store import (
    Ragged,
    StoredExamples,
    TokenStore,
    collect_texts,
    content_digest,
    store_folder,
    write_store,
)
from seq2seq.data.tokenizer import (
    SHARED,
    T2S_TABLE,
    SubwordTokenizer,
    spm_version,
    train_tokenizer,
)

log = logging.getLogger(__name__)


def load_corpus(cfg: DataConfig) -> Corpus:
    """Read (or generate) every split named by the config, in the configured direction, but a
    training split read from files: :func:`training_store` streams that one into the store."""
    if cfg.name == "synthetic":
        return _synthetic_corpus(cfg)
    paths = {split: path for split, path in corpus_paths(cfg).items() if split != "train"}
    if cfg.word_order:
        paths["word_order"] = Path(cfg.word_order).expanduser()
    corpus = Corpus({}, cfg.source_lang, cfg.target_lang)
    for split, path in paths.items():
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


def corpus_paths(cfg: DataConfig) -> dict[str, Any]:
    """Each split's corpus as the config names it (data=tatoeba: its downloaded TSV files)."""
    if cfg.name == "tatoeba":
        if not cfg.dir:
            raise ValueError("data=tatoeba needs data.dir")
        directory = Path(cfg.dir).expanduser()
        ensure_tatoeba(directory, cfg.url, cfg.sha256)
        return {split: directory / f"{split}.tsv" for split in SPLITS}
    if cfg.name == "tsv":
        missing = [split for split in SPLITS if not getattr(cfg, split)]
        if missing:
            raise ValueError(f"data=tsv needs a path for data.{', data.'.join(missing)}")
        return {split: getattr(cfg, split) for split in SPLITS}
    raise ValueError(f"data.name must be synthetic, tatoeba or tsv, got {cfg.name!r}")


@dataclass(frozen=True)
class TrainingCorpus:
    """One corpus of the training split: where it is, its name in the log, its weight."""

    spec: Any  # a path, or a list of line-aligned files (corpus.read_parallel)
    name: str
    weight: float | None  # None: data.train is one corpus, not a weighted list

    def files(self) -> list[Path]:
        specs = [self.spec] if isinstance(self.spec, (str, Path)) else list(self.spec)
        return [Path(spec).expanduser() for spec in specs]


def training_corpora(cfg: DataConfig) -> list[TrainingCorpus]:
    """``data.train`` as one corpus or, given as ``[{path, weight, name}, ...]``, several mixed
    by weight (OpenNMT-py's corpus ``weight``)."""
    spec = corpus_paths(cfg)["train"]
    if not is_weighted_list(spec):
        return [TrainingCorpus(spec, "train", None)]
    corpora = []
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
        corpora.append(TrainingCorpus(path, name, float(weight)))
    return corpora


def is_weighted_list(spec: object) -> bool:
    """``data.train`` as a list of corpora (``{path: ..., weight: ...}`` each), not one corpus."""
    return (
        isinstance(spec, Sequence)
        and not isinstance(spec, str)
        and any(isinstance(item, Mapping) for item in spec)
    )


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
    examples: Sequence[Example]
    source_ids: Sequence[Sequence[int]]  # lists, or the training split's stored Ragged arrays
    target_ids: Sequence[Sequence[int]]
    # the weighted corpora its examples come from (Example.corpus indexes them); empty: one
    parts: list[CorpusPart] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    def pair_lengths(self) -> np.ndarray:
        """Each pair's longer side plus EOS: what a batch of it pads to."""
        source, target = (_lengths(ids) for ids in (self.source_ids, self.target_ids))
        return np.maximum(source, target) + 1

    def corpus_of(self) -> Sequence[int]:
        """Each example's corpus (:attr:`Example.corpus`), read from the store where stored."""
        if isinstance(self.examples, StoredExamples):
            return self.examples.store.corpus
        return [example.corpus for example in self.examples]

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


def load_training_data(
    cfg: DataConfig, tokenizers: tuple[SubwordTokenizer, SubwordTokenizer] | None = None
) -> TrainingData:
    """Corpus → sentencepiece models (training split only; or ``tokenizers``, those of a run
    being resumed) → tokenized splits: train from the token store, length-filtered; the others
    encoded here, cut to ``data.max_length``."""
    corpus = load_corpus(cfg)
    store, parts, (source, target) = training_store(cfg, corpus, tokenizers)
    train = TokenizedSplit("train", store.examples(), store.source_ids, store.target_ids, parts)
    log.info(
        "train: %d pairs (%d malformed lines skipped, %d longer than data.max_length=%s dropped)",
        len(train),
        sum(part["skipped"] for part in store.manifest["parts"]),
        store.manifest["filtered"],
        cfg.max_length,
    )
    splits = {"train": train}
    for name, examples in corpus.splits.items():
        if name == "train":
            continue
        log.info(
            "%s: %d pairs (%d malformed lines skipped)",
            name,
            len(examples),
            corpus.skipped.get(name, 0),
        )
        splits[name] = tokenize_split(name, examples, source, target, cfg.max_length)
    return TrainingData(source, target, splits, corpus.has_gold_alignments)


def training_store(
    cfg: DataConfig,
    corpus: Corpus,
    tokenizers: tuple[SubwordTokenizer, SubwordTokenizer] | None,
) -> tuple[TokenStore, list[CorpusPart], tuple[SubwordTokenizer, SubwordTokenizer]]:
    """The tokenized training split, its weighted corpora (none: one unweighted corpus) and
    its sentencepiece models.

    Read from files, the split is read, tokenized and written once to
    ``data.cache_dir/tokens/<key>`` (seq2seq/data/token_store.py); a later run with the same
    corpus bytes and data settings opens that store instead, models included. ``tokenizers``
    (a resumed run's) are part of the key, so a store never pairs with other models.
    """
    if cfg.name == "synthetic":  # generated: the settings that generate it stand for its bytes
        corpora = []
        settings = {f.name: getattr(cfg.synthetic, f.name) for f in fields(SyntheticConfig)}
        digests = [["synthetic", json.dumps(settings, sort_keys=True)]]
        readers: Iterable[tuple[str, PairReader]] = [("train", synthetic_reader(corpus))]
    else:
        corpora = training_corpora(cfg)
        digests = [[c.name, content_digest(c.files())] for c in corpora]
        direction = (cfg.source_lang, cfg.target_lang)
        readers = (
            (c.name, pair_reader(c.spec, cfg.columns, *direction, cfg.on_malformed))
            for c in corpora
        )
    stores = Path(cfg.cache_dir).expanduser() / "tokens"
    directory = stores / store_key(cfg, digests, None)
    if tokenizers is not None and not holds_models(directory, tokenizers):
        directory = stores / store_key(cfg, digests, tokenizers)  # a resume with other models
    store = TokenStore.open(directory)
    if store is None:
        tokenizers = build_store(cfg, readers, tokenizers, directory)
        store = TokenStore.open(directory)
        assert store is not None, f"{directory}: the store just written does not open"
        log.info("train: tokenized into %s", directory)
    else:
        log.info("train: tokenized pairs from %s", directory)
    if tokenizers is None:
        tokenizers = tuple(
            SubwordTokenizer((directory / name).read_bytes()) for name in MODEL_FILES
        )
    return store, store.parts([c.weight for c in corpora if c.weight is not None]), tokenizers


def synthetic_reader(corpus: Corpus) -> PairReader:
    """The generated training pairs, read like a file's."""
    records = (
        (SYNTHETIC, i + 1, False, None, [e.source, e.target])
        for i, e in enumerate(corpus.splits["train"])
    )
    columns = [corpus.source_lang, corpus.target_lang]
    return PairReader(SYNTHETIC, records, columns, *columns, "error", "")


def build_store(
    cfg: DataConfig,
    corpora: Iterable[tuple[str, PairReader]],
    tokenizers: tuple[SubwordTokenizer, SubwordTokenizer] | None,
    directory: Path,
) -> tuple[SubwordTokenizer, SubwordTokenizer]:
    """Read the ``(name, reader)`` corpora, train (or take) the sentencepiece models, and write
    the store into ``directory``; the seconds of each stage go into its manifest and the log."""
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def stage(name: str) -> None:
        nonlocal clock
        seconds[name] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()

    with store_folder(directory) as folder:
        texts = collect_texts(corpora, folder)
        stage("read")
        tokenizers = tokenizers or build_tokenizers(texts.source, texts.target, cfg)
        stage("sentencepiece")
        texts.manifest["seconds"] = seconds  # write_store adds its own to the manifest
        models = {name: tok.model_proto for name, tok in zip(MODEL_FILES, tokenizers, strict=True)}
        write_store(texts, *tokenizers, cfg.max_length, folder, models)
    log.info("train: prepared in %s", ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    return tokenizers


SYNTHETIC = Path("synthetic/train")
MODEL_FILES = ("source.model", "target.model")  # a store's sentencepiece models


def holds_models(directory: Path, tokenizers: tuple[SubwordTokenizer, SubwordTokenizer]) -> bool:
    """Whether the store in ``directory`` was tokenized with exactly these models (a resumed
    run's, from its checkpoint, usually are those its first run stored)."""
    files = [directory / name for name in MODEL_FILES]
    return all(file.is_file() for file in files) and all(
        file.read_bytes() == tokenizer.model_proto
        for file, tokenizer in zip(files, tokenizers, strict=True)
    )


def store_key(
    cfg: DataConfig,
    corpus_digests: list[list[str]],
    tokenizers: tuple[SubwordTokenizer, SubwordTokenizer] | None,
) -> str:
    """What the training split's store depends on: the corpora (names and the digest of their
    bytes), how they are read and filtered, and the sentencepiece models (their settings, or,
    given, the models themselves)."""
    digest = hashlib.sha256()
    reading = {
        "format": STORE_FORMAT,
        "corpora": corpus_digests,
        **{
            key: getattr(cfg, key)
            for key in ("source_lang", "target_lang", "on_malformed", "max_length")
        },
        "columns": list(cfg.columns),
    }
    if tokenizers is None:
        reading |= {
            key: getattr(cfg, key)
            for key in (
                "src_vocab_size",
                "tgt_vocab_size",
                "shared_vocab_size",
                "spm_model_type",
                "spm_sample",
                "simplify_source",
            )
        }
        reading["sentencepiece"] = spm_version()
        reading["t2s"] = (
            hashlib.sha256(T2S_TABLE.read_bytes()).hexdigest() if cfg.simplify_source else None
        )
    else:
        reading["models"] = [hashlib.sha256(t.model_proto).hexdigest() for t in tokenizers]
    digest.update(json.dumps(reading, sort_keys=True).encode())
    return f"{cfg.source_lang}-{cfg.target_lang}-{digest.hexdigest()[:20]}"


def build_tokenizers(
    sources: Sequence[str], targets: Sequence[str], cfg: DataConfig
) -> tuple[SubwordTokenizer, SubwordTokenizer]:
    """One sentencepiece model per language, trained on the training split only (the source's
    converting traditional Chinese to simplified where ``data.simplify_source`` says so); or,
    with ``data.shared_vocab_size``, one model trained on both sides, used for both."""

    def trained(texts: Sequence[str], lang: str, size: int, simplify: bool) -> SubwordTokenizer:
        return train_tokenizer(
            texts,
            lang,
            size,
            cfg.spm_model_type,
            Path(cfg.cache_dir).expanduser(),
            simplify=simplify,
            sample=cfg.spm_sample,
        )

    if cfg.shared_vocab_size is not None:
        lang = f"{cfg.source_lang}{SHARED}{cfg.target_lang}"
        shared = trained([*sources, *targets], lang, cfg.shared_vocab_size, cfg.simplify_source)
        return shared, shared
    with ThreadPoolExecutor(2) as pool:  # sentencepiece trains outside the GIL: both at once
        source = pool.submit(
            trained, sources, cfg.source_lang, cfg.src_vocab_size, cfg.simplify_source
        )
        target = pool.submit(trained, targets, cfg.target_lang, cfg.tgt_vocab_size, False)
        return source.result(), target.result()


def tokenize_split(
    name: str,
    examples: list[Example],
    source: SubwordTokenizer,
    target: SubwordTokenizer,
    max_length: int | None = None,
) -> TokenizedSplit:
    """Encode a split that is translated whole (dev, test, evaluation): with ``max_length``,
    sequences longer than that are cut to it, so memory stays bounded, and counted. (The
    training split drops over-long pairs instead, as it is stored: token_store.write_store.)"""
    source_ids = source.encode([e.source for e in examples])
    target_ids = target.encode([e.target for e in examples])
    if max_length is not None:
        source_ids = truncate(source_ids, max_length, f"{name} sources")
        target_ids = truncate(target_ids, max_length, f"{name} targets (for the loss)")
    return TokenizedSplit(name, examples, source_ids, target_ids)


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


def _lengths(ids: Sequence[Sequence[int]]) -> np.ndarray:
    if isinstance(ids, Ragged):
        return ids.lengths()
    return np.fromiter(map(len, ids), np.int64, len(ids))
