"""Sentencepiece subword models: trained on the training split only, cached, and carried as bytes.

A model is kept as its serialized bytes so it can be stored inside every checkpoint: different
sentencepiece versions can train different models from the same text, so a checkpoint must never
depend on retraining one.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from seq2seq.files import atomic_write_bytes

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

# Chinese keeps its exact characters (full-width punctuation included) so that decoded Chinese
# output matches references; other languages get sentencepiece's usual NMT normalisation. A
# model shared by several languages ("zh+en") keeps Chinese exact, so it normalises nothing.
_NORMALIZATION = {"zh": "identity"}
SHARED = "+"  # joins the languages of a shared model: "zh+en"


def normalization_rule(lang: str) -> str:
    """sentencepiece's normalisation for a model of ``lang`` ("zh", "en", "zh+en")."""
    rules = {_NORMALIZATION.get(part, "nmt_nfkc") for part in lang.split(SHARED)}
    return "identity" if "identity" in rules else rules.pop()


# Traditional → simplified characters, for data.simplify_source (see the file's header).
T2S_TABLE = Path(__file__).with_name("t2s_characters.tsv")


class SubwordTokenizer:
    """Encode text to ids and back with one sentencepiece model."""

    def __init__(self, model_proto: bytes) -> None:
        self.model_proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        assert self._sp.pad_id() == PAD_ID and self._sp.eos_id() == EOS_ID, "unexpected special ids"

    def __len__(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self._sp.encode(list(texts))

    def nbest(self, texts: Sequence[str], size: int) -> list[list[list[int]]]:
        """The ``size`` most probable segmentations of each text, best (the usual one) first.

        No randomness: for subword sampling (seq2seq/data/subword_sampling.py), which draws
        among them with its own seeded generator.
        """
        return self._sp.nbest_encode(list(texts), nbest_size=size)

    def piece_log_probs(self) -> list[float]:
        """log P(piece) of every id under a unigram model (0 for the special ids)."""
        return [self._sp.get_score(i) for i in range(len(self))]

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode([i for i in ids if i > EOS_ID or i == UNK_ID])

    def pieces(self, ids: Sequence[int]) -> list[str]:
        return [self._sp.id_to_piece(int(i)) for i in ids]

    def piece_char_spans(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids of ``text`` and the character span each piece covers in the original string."""
        try:
            proto = self._sp.encode(text, return_type="proto")
        except TypeError:  # sentencepiece < 0.2.1 names it differently
            proto = self._sp.encode(text, out_type="immutable_proto")
        ids, spans, start = [], [], 0
        for piece in proto.pieces:
            ids.append(piece.id)
            spans.append((start, start + len(piece.surface)))
            start += len(piece.surface)
        return ids, spans


def spm_version() -> str:
    """The sentencepiece version: another may train other models from the same text."""
    return spm.__version__


def t2s_characters() -> dict[str, str]:
    """The traditional → simplified character table: ``{"這": "这", ...}``."""
    lines = T2S_TABLE.read_text(encoding="utf-8").splitlines()
    return dict(line.split("\t") for line in lines if line and not line.startswith("#"))


def training_sample(texts: Sequence[str], size: int | None) -> Sequence[str]:
    """At most ``size`` of ``texts`` (``data.spm_sample``; None: all), drawn with a fixed seed
    and kept in corpus order: what sentencepiece trains on.

    Its training time and memory grow with the sentences it reads (99 s for one million Chinese
    sentences on two cores), while a few hundred thousand already fix a vocabulary of a few
    thousand pieces. The seed is fixed, not ``trainer.seed``: runs of one corpus with different
    seeds (an ensemble's members) share one vocabulary.
    """
    if size is None or len(texts) <= size:
        return texts
    if size < 1:
        raise ValueError(f"data.spm_sample must be a positive number or null, got {size}")
    chosen = sorted(random.Random(0).sample(range(len(texts)), size))
    return [texts[i] for i in chosen]


def train_tokenizer(
    texts: Sequence[str],
    lang: str,
    vocab_size: int,
    model_type: str,
    cache_dir: Path,
    simplify: bool = False,
    sample: int | None = None,
) -> SubwordTokenizer:
    """Train (or load from ``cache_dir``) a sentencepiece model on ``texts``, or on ``sample``
    of them (:func:`training_sample`).

    ``simplify``: the model's own normaliser maps traditional Chinese characters to simplified
    ones (one character each, so every piece still covers its span of the original text). The
    mapping lives inside the model, and so inside every checkpoint: training, validation,
    evaluate.py and translate.py convert identically, and nothing else needs to know.

    The cache key covers the text, the settings and the sentencepiece version, so a sweep reuses
    one model and a changed corpus never picks up a stale one.
    """
    corpus_size = len(texts)
    texts = training_sample(texts, sample)
    digest = hashlib.sha256()
    for part in (lang, str(vocab_size), model_type, spm.__version__):
        digest.update(part.encode() + b"\0")
    if simplify:
        digest.update(b"t2s\0" + T2S_TABLE.read_bytes())
    for text in texts:
        digest.update(text.encode() + b"\n")
    t2s = "-t2s" if simplify else ""
    name = f"{lang}{t2s}-{model_type}-{vocab_size}-{digest.hexdigest()[:16]}.model"
    path = Path(cache_dir) / "spm" / name
    if path.is_file():
        return SubwordTokenizer(path.read_bytes())
    log.info(
        "training %s sentencepiece model (%s, %d pieces) on %s sentences",
        lang,
        model_type,
        vocab_size,
        f"{len(texts):,}"
        + (f" of {corpus_size:,} (data.spm_sample)" if sample and corpus_size > sample else ""),
    )
    model = io.BytesIO()
    try:
        _train_sentencepiece(texts, lang, vocab_size, model_type, model, simplify)
    except (RuntimeError, ValueError) as error:  # sentencepiece's own errors carry no setting
        reason = str(error).split("] ", 1)[-1].split(" with --", 1)[0]
        raise ValueError(
            f"sentencepiece could not train the {lang} model (vocab_size={vocab_size}, "
            f"model_type={model_type!r}) on {len(texts)} sentences: {reason}; change "
            "data.src_vocab_size / data.tgt_vocab_size or data.spm_model_type (unigram or bpe)"
        ) from error
    atomic_write_bytes(path, model.getvalue())
    return SubwordTokenizer(model.getvalue())


def _train_sentencepiece(
    texts: Sequence[str],
    lang: str,
    vocab_size: int,
    model_type: str,
    model: io.BytesIO,
    simplify: bool,
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        normalization = {"normalization_rule_name": normalization_rule(lang)}
        if simplify:  # identity, except traditional → simplified (code points in hex)
            rules = Path(scratch) / "t2s.tsv"
            rules.write_text(
                "".join(f"{ord(t):X}\t{ord(s):X}\n" for t, s in t2s_characters().items())
            )
            normalization = {"normalization_rule_tsv": str(rules)}
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=0.9995 if "zh" in lang.split(SHARED) else 1.0,
            **normalization,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            hard_vocab_limit=False,
            num_threads=1,
            minloglevel=2,
        )
