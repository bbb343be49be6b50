"""Beam search: beam 1 is greedy, hypotheses are what the model says, the length penalty."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import VOCAB, small_model
from omegaconf import OmegaConf

from seq2seq.data.batching import Batch, collate
from seq2seq.data.tokenizer import BOS_ID, EOS_ID
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.search import (
    CANDIDATE_CHUNK,
    SearchSettings,
    beam_search,
    best_candidates,
    gnmt_length_penalty,
    greedy_search,
    max_output_length,
    next_word,
    translate_batch,
)


def random_model(attention: str, rnn: str, seed: int, style: str = "bahdanau") -> Seq2Seq:
    return small_model(attention, rnn, style, seed=seed)


def random_batch(seed: int, size: int = 6) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 9, (size,), generator=generator).tolist()
    sources = [torch.randint(4, VOCAB, (n,), generator=generator).tolist() for n in lengths]
    return collate(sources, None, list(range(size)))


@pytest.mark.parametrize("attention", ["none", "bahdanau", "multihead"])
@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("style", ["bahdanau", "luong"])
def test_beam_size_one_is_greedy(attention: str, rnn: str, style: str) -> None:
    for seed in range(4):
        model, batch = random_model(attention, rnn, seed, style), random_batch(seed)
        greedy = greedy_search(model, batch)
        beam = beam_search(model, batch, SearchSettings(beam_size=1))
        for g, (b,) in zip(greedy, beam, strict=True):
            assert b.tokens == g.tokens
            assert b.score == pytest.approx(g.score, abs=1e-4)
            if attention == "none":
                assert b.weights is None and g.weights is None
            else:
                torch.testing.assert_close(b.weights, g.weights)


@pytest.mark.parametrize(
    ("attention", "style"),
    [("none", "bahdanau"), ("bahdanau", "bahdanau"), ("multihead", "bahdanau"), ("dot", "luong")],
)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_nbest_is_sorted_and_each_hypothesis_is_what_the_model_says(
    attention: str, style: str, alpha: float
) -> None:
    """Teacher-forcing each returned output gives its score and its attention, row for row."""
    model, batch = random_model(attention, "gru", 1, style), random_batch(seed=1)
    nbest_lists = beam_search(model, batch, SearchSettings(beam_size=4, nbest=3, alpha=alpha))
    for row, hypotheses in enumerate(nbest_lists):
        assert len(hypotheses) == 3
        penalized = [h.penalized_score for h in hypotheses]
        assert penalized == sorted(penalized, reverse=True)
        src_len = int(batch.src_lengths[row])
        source = batch.src[row, : src_len - 1].tolist()  # collate adds the EOS again
        for h in hypotheses:
            assert h.penalized_score == pytest.approx(
                h.score / gnmt_length_penalty(len(h.tokens), alpha)
            )
            forced = collate([source], [h.tokens[:-1]], [0])  # input: BOS + all but the last
            with torch.no_grad():
                logits, weights = model(forced)
            log_probs = torch.log_softmax(logits[0], dim=-1)
            forced_score = log_probs[torch.arange(len(h.tokens)), h.tokens].sum()
            assert h.score == pytest.approx(float(forced_score), abs=1e-4)
            if attention == "none":
                assert h.weights is None
            else:
                heads = 2 if attention == "multihead" else 1
                assert h.weights is not None
                assert h.weights.shape == (len(h.tokens), heads, src_len)
                torch.testing.assert_close(h.weights, weights[0], atol=1e-5, rtol=1e-4)


def test_beam_search_returns_different_hypotheses_in_batch_row_order() -> None:
    model, batch = random_model("bahdanau", "lstm", seed=2), random_batch(seed=2)
    nbest_lists = beam_search(model, batch, SearchSettings(beam_size=3, nbest=3))
    for row, hypotheses in enumerate(nbest_lists):
        assert len({tuple(h.tokens) for h in hypotheses}) == 3
        alone = collate([batch.src[row, : int(batch.src_lengths[row]) - 1].tolist()], None, [0])
        (alone_hypotheses,) = beam_search(model, alone, SearchSettings(beam_size=3, nbest=3))
        if batch.src_lengths[row] == batch.src_lengths.max():  # same length limit
            assert [h.tokens for h in alone_hypotheses] == [h.tokens for h in hypotheses]


def fixed_distribution_model(probabilities: dict[int, float]) -> Seq2Seq:
    """A model whose next-word distribution is the same at every step, whatever came before."""
    model = random_model("none", "gru", seed=0)
    rest = (1.0 - sum(probabilities.values())) / (VOCAB - len(probabilities))
    distribution = torch.full((VOCAB,), rest)
    for token, p in probabilities.items():
        distribution[token] = p
    with torch.no_grad():
        model.decoder.output.weight.zero_()
        model.decoder.output.bias.copy_(distribution.log())
    return model


def test_length_penalty_lets_a_longer_hypothesis_win() -> None:
    """P(EOS) = 0.09, P(w) = 0.9 at every step: [EOS] has the highest sum, α = 1 favours w EOS.

    log P([EOS]) = -2.41 > log P([w, EOS]) = -2.51, but -2.51 / lp(2) = -2.15 > -2.41 / lp(1).
    """
    word = 7
    model = fixed_distribution_model({EOS_ID: 0.09, word: 0.9})
    batch = collate([[5, 6]], None, [0])
    ((plain, second),) = beam_search(model, batch, SearchSettings(beam_size=2, nbest=2, alpha=0.0))
    assert plain.tokens == [EOS_ID] and second.tokens == [word, EOS_ID]
    assert plain.score > second.score
    ((penalized, runner_up),) = beam_search(
        model, batch, SearchSettings(beam_size=2, nbest=2, alpha=1.0)
    )
    assert penalized.tokens == [word, EOS_ID] and runner_up.tokens == [EOS_ID]
    expected = (math.log(0.9) + math.log(0.09)) / (7 / 6)
    assert penalized.penalized_score == pytest.approx(expected, abs=1e-4)


def test_a_sentence_without_eos_is_cut_at_the_length_limit() -> None:
    model = fixed_distribution_model({EOS_ID: 1e-6, BOS_ID: 1e-6})
    batch = collate([[5, 6, 7]], None, [0])  # 4 source tokens with EOS
    ((greedy,),) = translate_batch(model, batch, SearchSettings(max_ratio=1.0, max_extra=2))
    (beam,) = beam_search(
        model, batch, SearchSettings(beam_size=3, nbest=3, max_ratio=1.0, max_extra=2)
    )
    assert len(greedy.tokens) == 6 and EOS_ID not in greedy.tokens
    assert all(len(h.tokens) == 6 and EOS_ID not in h.tokens for h in beam)


def test_nbest_larger_than_the_beam_is_refused() -> None:
    with pytest.raises(ValueError, match="nbest"):
        SearchSettings(beam_size=2, nbest=3)
    with pytest.raises(ValueError, match="beam_size"):
        SearchSettings(beam_size=0, nbest=0)


def test_search_settings_come_from_the_config_and_choices_given_replace_them() -> None:
    search = {"beam_size": 4, "alpha": 1.5, "max_ratio": 1.5, "max_extra": 3, "stop": "best_ends"}
    cfg = OmegaConf.create({"search": search})
    settings = SearchSettings.from_config(cfg, "bf16")
    assert settings == SearchSettings(4, 1, 1.5, 1.5, 3, "best_ends", "bf16")
    # A command-line flag not given is None: the config's value stays.
    chosen = SearchSettings.from_config(cfg, "fp32", beam_size=2, nbest=2, alpha=None, stop=None)
    assert chosen == SearchSettings(2, 2, 1.5, 1.5, 3, "best_ends", "fp32")
    assert chosen.replace(alpha=0.0).alpha == 0.0 and not chosen.greedy
    assert SearchSettings.from_config(cfg, "fp32", beam_size=1).greedy


@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("attention", ["bahdanau", "multihead"])
def test_stopping_a_sentence_early_never_changes_its_best_hypothesis(
    attention: str, alpha: float
) -> None:
    """With nbest = beam a sentence runs until beam hypotheses finish (no early stop); the
    best of those must be what nbest = 1, which stops as soon as nothing can beat it, returns.
    Decoding each sentence alone (its own length limit aside) must agree with the batch, whose
    sentences leave it at different steps."""
    for seed in range(5):
        model, batch = random_model(attention, "gru", seed), random_batch(seed, size=8)
        exhaustive = beam_search(model, batch, SearchSettings(beam_size=4, nbest=4, alpha=alpha))
        early = beam_search(model, batch, SearchSettings(beam_size=4, nbest=1, alpha=alpha))
        for (first, *_), (best,) in zip(exhaustive, early, strict=True):
            assert best.tokens == first.tokens
            assert best.penalized_score == pytest.approx(first.penalized_score, abs=1e-5)
            torch.testing.assert_close(best.weights, first.weights)


def test_the_gnmt_length_penalty_by_hand() -> None:
    """lp(Y) = ((5 + |Y|) / 6)^α: 1 for one word, and for α = 0 whatever the length."""
    assert gnmt_length_penalty(1, 1.5) == 1.0
    assert gnmt_length_penalty(7, 0.5) == pytest.approx(math.sqrt(2))
    assert gnmt_length_penalty(13, 1.0) == pytest.approx(3.0)
    assert gnmt_length_penalty(40, 0.0) == 1.0


def reference_beam_search(
    model: Seq2Seq,
    source: list[int],
    beam_size: int,
    alpha: float,
    max_length: int,
    stop_when_best_ends: bool = False,
) -> list[tuple[list[int], float]]:
    """Textbook beam search for one sentence, one prefix at a time, with no early stop: each
    step the best beam_size of all extensions are kept; those ending in EOS are finished (up to
    beam_size in all), the others go on; at the length limit live prefixes count as they are.
    ``stop_when_best_ends`` stops at the first step whose best extension ends in EOS.
    Returns (tokens, penalised score) of every finished hypothesis, best first."""
    decoder = model.decoder
    encoder = model.encode(collate([source], None, [0]))
    memory = decoder.prepare(encoder)
    live = [(0.0, [BOS_ID], decoder.init_state(encoder))]
    finished: list[tuple[float, list[int]]] = []
    for _ in range(max_length):
        candidates = []
        for score, tokens, state in live:
            embedded, gates = decoder.embed(torch.tensor([tokens[-1]]))
            new_state, context, _ = decoder.step(gates, state, memory)
            log_probs = torch.log_softmax(decoder.logits(new_state.hidden, context, embedded), -1)
            for token, log_prob in enumerate(log_probs[0].tolist()):
                candidates.append((score + log_prob, [*tokens, token], new_state))
        candidates.sort(key=lambda c: c[0], reverse=True)
        for score, tokens, _ in candidates[:beam_size]:
            if tokens[-1] == EOS_ID and len(finished) < beam_size:
                finished.append((score, tokens[1:]))
        live = [c for c in candidates[: 2 * beam_size] if c[1][-1] != EOS_ID][:beam_size]
        if len(finished) >= beam_size or (stop_when_best_ends and candidates[0][1][-1] == EOS_ID):
            break
    else:
        finished += [(score, tokens[1:]) for score, tokens, _ in live][: beam_size - len(finished)]
    ranked = [
        (tokens, score / gnmt_length_penalty(len(tokens), alpha)) for score, tokens in finished
    ]
    return sorted(ranked, key=lambda entry: entry[1], reverse=True)


@pytest.mark.parametrize("alpha", [0.0, 2.5])
@pytest.mark.parametrize(("sharpness", "eos_bias"), [(1.0, 0.0), (6.0, 2.0), (6.0, 4.0)])
def test_batched_beam_search_equals_a_textbook_beam_search(
    alpha: float, sharpness: float, eos_bias: float
) -> None:
    """The batched search — sentences leaving the batch when done, stopping as soon as nothing
    can beat the finished hypotheses (nbest 1) — returns exactly what a plain, one-sentence-
    at-a-time beam search without any early stop returns: the same n-best lists and scores.
    Sharp output distributions make long hypotheses cheap, so a strong length penalty (2.5)
    lets late finishers win: the case an unsound early stop gets wrong."""
    for seed in range(8):
        model = random_model("bahdanau", "gru", seed)
        with torch.no_grad():
            model.decoder.output.weight.mul_(sharpness)
            model.decoder.output.bias.mul_(sharpness)
            model.decoder.output.bias[EOS_ID] += eos_bias  # hypotheses end at many lengths
        batch = random_batch(seed, size=6)
        nbest = beam_search(model, batch, SearchSettings(beam_size=3, nbest=3, alpha=alpha))
        best = beam_search(model, batch, SearchSettings(beam_size=3, nbest=1, alpha=alpha))
        limit = max_output_length(batch.src_lengths, 2.0, 10)
        for row in range(len(batch.indices)):
            source = batch.src[row, : int(batch.src_lengths[row]) - 1].tolist()  # without EOS
            expected = reference_beam_search(model, source, 3, alpha, limit)
            assert [h.tokens for h in nbest[row]] == [tokens for tokens, _ in expected]
            assert best[row][0].tokens == expected[0][0]
            for hypothesis, (_, penalized) in zip(nbest[row], expected, strict=True):
                assert hypothesis.penalized_score == pytest.approx(penalized, abs=1e-4)


@pytest.mark.parametrize("alpha", [0.0, 2.5])
def test_stopping_when_the_best_candidate_ends_is_the_textbook_search_stopped_there(
    alpha: float,
) -> None:
    """``stop="best_ends"`` (OpenNMT-py's rule) ends each sentence at the first step whose best
    extension is EOS: its best is the textbook search's stopped at that step. It keeps a subset
    of the exact search's finished hypotheses, so its best is never longer than the exact best."""
    differs = 0
    for seed in range(8):
        model = random_model("bahdanau", "gru", seed)
        with torch.no_grad():
            model.decoder.output.weight.mul_(6.0)
            model.decoder.output.bias.mul_(6.0)
            model.decoder.output.bias[EOS_ID] += 2.0
        batch = random_batch(seed, size=6)
        quick = beam_search(
            model, batch, SearchSettings(beam_size=3, alpha=alpha, stop="best_ends")
        )
        exact = beam_search(model, batch, SearchSettings(beam_size=3, alpha=alpha))
        limit = max_output_length(batch.src_lengths, 2.0, 10)
        for row in range(len(batch.indices)):
            source = batch.src[row, : int(batch.src_lengths[row]) - 1].tolist()
            (tokens, penalized), *_ = reference_beam_search(model, source, 3, alpha, limit, True)
            assert quick[row][0].tokens == tokens
            assert quick[row][0].penalized_score == pytest.approx(penalized, abs=1e-4)
            assert len(quick[row][0].tokens) <= len(exact[row][0].tokens)
            differs += quick[row][0].tokens != exact[row][0].tokens
    assert differs or alpha == 0.0  # with α > 0 a longer hypothesis sometimes overtakes


def test_an_unknown_beam_stop_is_refused() -> None:
    with pytest.raises(ValueError, match="best_ends"):
        SearchSettings(beam_size=2, stop="first")


def test_search_log_probabilities_are_float32_under_bf16_autocast() -> None:
    """On CPU, autocast would run log_softmax in bfloat16 (three significant digits); search
    ranks candidates by float32 log-probabilities of the bf16 logits, which sum to one."""
    model, batch = random_model("bahdanau", "gru", seed=0, style="luong"), random_batch(seed=0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        encoder = model.encode(batch)
        memory = model.decoder.prepare(encoder)
        assert memory.attention.values.dtype == torch.bfloat16  # cast once per batch
        previous = torch.full((batch.src.size(0),), BOS_ID, dtype=torch.long)
        _, log_probs, _ = next_word(
            model.decoder, previous, model.decoder.init_state(encoder), memory
        )
    assert log_probs.dtype == torch.float32
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(len(log_probs)))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # training: the stepwise products cast
        assert model.decoder.prepare(model.encode(batch)).attention.values.dtype == torch.float32


def test_best_candidates_by_chunks_are_the_topk() -> None:
    """The two-pass top-k equals ``topk``: scores and, without ties, positions; also when all k
    best sit in one chunk, or most of a row is -inf (the first step's empty beam rows)."""
    generator = torch.Generator().manual_seed(0)
    candidates = torch.randn(6, 50 * CANDIDATE_CHUNK, generator=generator)
    candidates[1, 3 * CANDIDATE_CHUNK : 3 * CANDIDATE_CHUNK + 10] += 10.0  # one chunk holds all
    candidates[2, 7:] = float("-inf")
    candidates[3] = -candidates[3].abs()  # all below zero
    scores, ids = best_candidates(candidates, 10)
    expected_scores, expected_ids = candidates.topk(10, dim=1)
    assert torch.equal(scores, expected_scores)
    assert torch.equal(ids[[0, 1, 3, 4, 5]], expected_ids[[0, 1, 3, 4, 5]])
    assert torch.equal(candidates.gather(1, ids), scores)
    short = candidates[:, :1234]  # not in whole chunks: plain topk
    assert torch.equal(best_candidates(short, 10)[1], short.topk(10, dim=1).indices)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_an_observer_sees_each_steps_live_prefixes_as_the_beam_holds_them(beam_size: int) -> None:
    """What the explorer's step-through shows: after every step, each sentence's prefixes
    that go on, best first, each one word longer and extending one of the step before."""
    model = random_model("bahdanau", "gru", seed=3)
    batch = random_batch(5, size=3)
    settings = SearchSettings(beam_size=beam_size, nbest=1)
    seen: list[list[list[tuple[list[int], float]]]] = []
    with torch.no_grad():
        (hypotheses, *_) = beam_search(
            model,
            batch,
            settings,
            lambda beam: seen.append([beam.live_prefixes(s) for s in range(3)]),
        )
    assert seen, "the observer was never called"
    for sentence in range(3):
        steps = [step[sentence] for step in seen]
        for i, live in enumerate(steps):
            assert len(live) <= beam_size
            assert all(len(tokens) == i + 1 and EOS_ID not in tokens for tokens, _ in live)
            scores = [score for _, score in live]
            assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
            if i and live:
                before = {tuple(tokens) for tokens, _ in steps[i - 1]}
                assert all(tuple(tokens[:-1]) in before for tokens, _ in live)
    best = hypotheses[0].tokens  # sentence 0's translation: a live prefix before its EOS
    if len(best) > 1:
        assert best[:-1] in [tokens for tokens, _ in seen[len(best) - 2][0]]
    if beam_size == 1:  # greedy: the one live prefix is the translation so far
        for i, step in enumerate(seen[: len(best) - 1]):
            assert [tokens for tokens, _ in step[0]] == [best[: i + 1]]


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_greedy_search_of_a_batch_gives_each_sentence_what_it_gets_alone(family: str) -> None:
    """Finished sentences leave the batch (its rows shrink to a few bucket sizes, the state and
    memory with them): every sentence still gets the words, score and weights it gets alone."""
    from test_transformer import transformer

    model = small_model("bahdanau", "gru", seed=3) if family == "rnn" else transformer(seed=3)
    with torch.no_grad():  # EOS just likely enough that the outputs end at different steps
        model.decoder.output.bias[EOS_ID] += 0.7
    batch = random_batch(seed=1, size=12)
    limit = {"max_ratio": 0.0, "max_extra": 24}  # one length limit for the batch and each alone
    together = greedy_search(model, batch, **limit)
    assert len({len(h.tokens) for h in together}) >= 4
    sources = [batch.src[row, : int(batch.src_lengths[row]) - 1].tolist() for row in range(12)]
    for source, hypothesis in zip(sources, together, strict=True):
        (alone,) = greedy_search(model, collate([source], None, [0]), **limit)
        assert hypothesis.tokens == alone.tokens
        assert hypothesis.score == pytest.approx(alone.score, abs=1e-5)
        torch.testing.assert_close(hypothesis.weights, alone.weights)
