"""What the explorer shows for one sentence and one checkpoint, computed without any web code.

The translations come from the package's own search (:meth:`Translator.translate`); the
step-by-step view replays the model one word at a time through the decoder interface that
search uses (``decoder.prepare``, ``decoder.init_state`` and :func:`seq2seq.search.next_word`),
so the top-k words and the attention row a_i· are the numbers the search itself saw, and the
beam's live prefixes are read from :class:`seq2seq.search.Beam` itself after every step.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from seq2seq.data.batching import collate
from seq2seq.data.tokenizer import BOS_ID, EOS_ID
from seq2seq.device import autocast
from seq2seq.inference import InferenceError, Translator, piece_word_indices
from seq2seq.model.encoding import EncoderOutput
from seq2seq.model.seq2seq import Decoder
from seq2seq.model.transformer_decoder import TransformerDecoder
from seq2seq.search import Hypothesis, SearchSettings, next_word

# Characters accepted before tokenizing: a pasted book is refused before it costs anything.
MAX_CHARACTERS = 2000
NO_WEIGHTS = (
    "No attention weights: this model has no attention (model=distracted). Every output word "
    "gets the same context C, the encoder's summary of the whole sentence."
)


@dataclass
class LoadedModel:
    """A checkpoint loaded once at start-up, and how the page names it."""

    name: str
    translator: Translator

    def describe(self) -> str:
        model = self.translator.config.model
        attention = "none (distracted)" if model.attention.name == "none" else model.attention.name
        return f"attention: {attention}; encoder: {model.encoder.name}"


@dataclass
class Step:
    """Output position i of one translation, as the decoder saw it."""

    piece: str  # the piece chosen at i ("</s>" for EOS)
    weights: np.ndarray | None  # (src pieces,) a_i·, mean over heads; None without attention
    top_words: list[tuple[str, float]]  # the k most probable pieces at i and their probabilities
    beam: list[tuple[str, float]]  # the live prefixes after step i and their log-probabilities


@dataclass
class Output:
    """One translation of the n-best list."""

    text: str
    score: float  # log-probability / length penalty: what beam search ranks by
    target_labels: list[str]  # its pieces, "</s>" for EOS
    # (layers, heads, target pieces, source pieces) cross-attention, None without attention;
    # an RNN decoder has one layer, a Transformer one per decoder layer.
    weights: np.ndarray | None
    steps: list[Step] = field(default_factory=list)  # one per output piece
    alignment_layer: int = 0  # the layer the heatmap shows (a Transformer's, chosen on dev)

    @property
    def alignment(self) -> np.ndarray | None:
        """(target, source) weights of the heatmap: the alignment layer, mean over heads."""
        return None if self.weights is None else self.weights[self.alignment_layer].mean(axis=0)


@dataclass
class Explanation:
    """Everything the page shows for one checkpoint and one sentence."""

    source: str
    source_labels: list[str]  # source pieces and "</s>"
    outputs: list[Output]  # n-best, best first
    # (layers, heads, src, src) self-attention of a self-attention encoder, else None
    encoder_attention: np.ndarray | None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def explain(
    translator: Translator, source: str, search: SearchSettings, top_k: int = 5
) -> Explanation:
    """Translate ``source`` and collect the alignment, per-step and encoder views of it.

    Raises :class:`InferenceError` for a blank or over-long sentence, with the cap that
    ``seq2seq-translate`` applies (it cuts such lines at ``data.max_length`` pieces).
    """
    start = time.perf_counter()
    source = source.strip()
    source_ids = checked_source_ids(translator, source)
    beam_size = search.beam_size
    trace: list[list[tuple[list[int], float]]] = []  # beam search's live prefixes, step by step
    (hypotheses,) = translator.translate(
        [source], search, batch_size=1, observe=lambda beam: trace.append(beam.live_prefixes(0))
    )
    source_labels = [*translator.source_tokenizer.pieces(source_ids), "</s>"]
    outputs = [output_of(translator, hypothesis) for hypothesis in hypotheses]
    model = translator.model
    batch = collate([source_ids], None, [0]).to(translator.device)
    longest = max(len(hypothesis.tokens) for hypothesis in hypotheses)
    with torch.no_grad(), autocast(translator.device, translator.precision):
        encoder = model.encode(batch)
        memory = model.decoder.prepare(encoder)
        forced = [forced_steps(model.decoder, encoder, memory, h.tokens) for h in hypotheses]
        if isinstance(model.decoder, TransformerDecoder) and model.has_attention_weights:
            for output, hypothesis in zip(outputs, hypotheses, strict=True):
                output.weights = cross_attention_layers(model.decoder, encoder, hypothesis.tokens)
                output.alignment_layer = model.decoder.alignment_index
        if beam_size == 1:  # greedy search's one live prefix is the output so far
            beams = greedy_trace(hypotheses[0].tokens, [log_probs for log_probs, _ in forced[0]])
        else:  # steps after the search stopped have no live prefix
            beams = trace[:longest] + [[] for _ in range(longest - len(trace))]
        maps = getattr(model.encoder, "attention_maps", None)
        encoder_attention = None
        if maps is not None:  # (layers, heads, src, src) for the one sentence
            encoder_attention = torch.stack([m[0] for m in maps(batch.src)]).float().numpy()
    for output, replay in zip(outputs, forced, strict=True):
        output.steps = [
            step_of(translator, piece, log_probs, weights, beam, top_k)
            for piece, (log_probs, weights), beam in zip(
                output.target_labels, replay, beams, strict=False
            )
        ]
    notes = [] if model.has_attention_weights else [NO_WEIGHTS]
    seconds = time.perf_counter() - start
    return Explanation(source, source_labels, outputs, encoder_attention, seconds, notes)


def step_of(
    translator: Translator,
    piece: str,
    log_probs: torch.Tensor,
    weights: torch.Tensor | None,
    beam: list[tuple[list[int], float]],
    top_k: int,
) -> Step:
    """One position's view: the chosen piece, a_i· (mean over heads), top-k words, beam."""
    top = log_probs.topk(min(top_k, log_probs.numel()))
    words = [
        (piece_label(translator, int(token)), float(value))
        for value, token in zip(top.values.exp(), top.indices, strict=True)
    ]
    live = [(prefix_text(translator, tokens), score) for tokens, score in beam]
    row = None if weights is None else weights.mean(dim=0).numpy()
    return Step(piece, row, words, live)


def checked_source_ids(translator: Translator, source: str) -> list[int]:
    """The sentence's subword ids, or an error a person can act on."""
    if not source:
        raise InferenceError("type a sentence to translate")
    if len(source) > MAX_CHARACTERS:
        raise InferenceError(
            f"the sentence has {len(source)} characters; the explorer takes at most "
            f"{MAX_CHARACTERS}: shorten it"
        )
    (ids,) = translator.source_tokenizer.encode([source])
    cap = int(translator.config.data.max_length)
    if len(ids) > cap:
        raise InferenceError(
            f"the sentence has {len(ids)} subword pieces; this checkpoint was trained on at "
            f"most data.max_length={cap} (seq2seq-translate cuts longer lines there): shorten it"
        )
    return ids


def output_of(translator: Translator, hypothesis: Hypothesis) -> Output:
    labels = [piece_label(translator, token) for token in hypothesis.tokens]
    weights = None
    if hypothesis.weights is not None:  # (tgt, heads, src) → (1 layer, heads, tgt, src)
        weights = hypothesis.weights.permute(1, 0, 2).unsqueeze(0).numpy()
    return Output(translator.detokenize(hypothesis), hypothesis.penalized_score, labels, weights)


def cross_attention_layers(
    decoder: TransformerDecoder, encoder: EncoderOutput, tokens: Sequence[int]
) -> np.ndarray:
    """Every layer's cross-attention on the output, (layers, heads, tgt, src): teacher-forcing
    the output gives the weights its search saw (the cached steps equal the parallel pass)."""
    tgt_in = torch.tensor([[BOS_ID, *tokens[:-1]]], device=encoder.states.device)
    layers = decoder.cross_attention(tgt_in, encoder)
    assert all(layer is not None for layer in layers), "a cross-attention without weights"
    return torch.stack([layer[0] for layer in layers]).transpose(1, 2).float().cpu().numpy()


def piece_label(translator: Translator, token: int) -> str:
    return "</s>" if token == EOS_ID else translator.target_tokenizer.pieces([token])[0]


def prefix_text(translator: Translator, tokens: Sequence[int]) -> str:
    return " ".join(piece_label(translator, token) for token in tokens)


def decoder_step(
    decoder: Decoder, previous: torch.Tensor, state: Any, memory: Any
) -> tuple[Any, torch.Tensor, torch.Tensor | None]:
    """The one place the explorer calls the search's step: (state, log-probs, weights)."""
    return next_word(decoder, previous, state, memory)


def forced_steps(
    decoder: Decoder, encoder: EncoderOutput, memory: Any, tokens: Sequence[int]
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Feed ``tokens`` one by one: at each position the log-probabilities over the vocabulary
    (vocab,) and the attention weights (heads, src) the decoder had before choosing it."""
    state = decoder.init_state(encoder)
    previous = torch.tensor([BOS_ID], device=encoder.states.device)
    steps = []
    for token in tokens:
        state, log_probs, weights = decoder_step(decoder, previous, state, memory)
        steps.append((log_probs[0].cpu(), None if weights is None else weights[0].float().cpu()))
        previous = torch.tensor([token], device=previous.device)
    return steps


def greedy_trace(
    tokens: Sequence[int], log_probs: Sequence[torch.Tensor]
) -> list[list[tuple[list[int], float]]]:
    """The live prefix after each step of greedy search's ``tokens`` (what beam search of
    size 1 holds), from the log-probs the forced replay already computed: no second search."""
    trace, score = [], 0.0
    for i, token in enumerate(tokens):
        score += float(log_probs[i][token])
        trace.append([] if token == EOS_ID else [(list(tokens[: i + 1]), score)])
    return trace


def word_groups(pieces: Sequence[str], lang: str) -> list[list[int]]:
    """Consecutive pieces of one word, in order; pieces outside any word stand alone."""
    groups: list[list[int]] = []
    last = -1
    for index, word in enumerate(piece_word_indices(pieces, lang)):
        if word >= 0 and word == last:
            groups[-1].append(index)
        else:
            groups.append([index])
        last = word
    return groups


def to_words(
    weights: np.ndarray,
    source_labels: Sequence[str],
    target_labels: Sequence[str],
    source_lang: str,
    target_lang: str,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Piece weights (..., tgt, src) to word weights, as the hard links count them.

    A source word gets the sum of its pieces' weights (the mass the decoder put on it), a
    target word the mean of its pieces' rows, so every row still sums to 1.
    """
    source_groups = word_groups(source_labels, source_lang)
    target_groups = word_groups(target_labels, target_lang)
    columns = np.stack([weights[..., group].sum(-1) for group in source_groups], -1)
    rows = np.stack([columns[..., group, :].mean(-2) for group in target_groups], -2)
    return rows, join(source_labels, source_groups), join(target_labels, target_groups)


def join(labels: Sequence[str], groups: Sequence[Sequence[int]]) -> list[str]:
    return ["".join(labels[i] for i in group).replace("\u2581", "") or "\u2581" for group in groups]
