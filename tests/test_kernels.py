"""``model.kernels``: ``reference`` trains through the plain modules only, ``auto`` swaps in the
fast kernels on CPU, and a model's parameters and checkpoints are the same either way."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import pytest
import torch
from helpers import VOCAB, model_config, padded_batch, small_model

import seq2seq.fast
from seq2seq.config.saved import check_resume_config
from seq2seq.fast.kernels import accelerate
from seq2seq.model.encoder import RNNEncoder
from seq2seq.model.seq2seq import Seq2Seq, build_model
from seq2seq.search import SearchSettings, beam_search, greedy_search
from seq2seq.training.step import TrainingStep, build_optimizer

FAST = Path(seq2seq.fast.__file__).parent


def model_with_dropout(kernels: str, *settings: str) -> Seq2Seq:
    cfg = model_config(
        "embed_size=8",
        f"kernels={kernels}",
        "encoder.rnn.hidden=6",
        "decoder.rnn.hidden=12",
        "attention.name=bahdanau",
        "attention.bahdanau.size=12",
        *settings,
    )
    torch.manual_seed(0)
    return accelerate(build_model(cfg, VOCAB, VOCAB), kernels, torch.device("cpu"))


def fast_code_called(run: Callable[[], object]) -> set[str]:
    """The functions of ``seq2seq/fast/`` that ``run`` calls, backward passes included."""
    called: set[str] = set()

    def profile(frame: FrameType, event: str, _: object) -> None:
        if event == "call" and Path(frame.f_code.co_filename).parent == FAST:
            called.add(f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}")

    sys.setprofile(profile)
    threading.setprofile(profile)  # autograd may run a backward pass on a thread of its own
    try:
        run()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    return called


@pytest.mark.parametrize(
    ("style", "rnn"), [("bahdanau", "gru"), ("luong", "gru"), ("luong", "lstm")]
)
def test_with_reference_kernels_training_and_search_run_only_the_plain_modules(
    style: str, rnn: str
) -> None:
    """Gradients flow through attention.py and decoder.py's own code: nothing of seq2seq/fast
    runs, forward or backward, and the model has no fast module. With ``auto`` the same calls
    do run the fast kernels (so the watch sees them)."""
    batch = padded_batch()
    for kernels in ("reference", "auto"):
        model = model_with_dropout(
            kernels,
            f"decoder.rnn.style={style}",
            f"encoder.rnn.cell={rnn}",
            f"decoder.rnn.cell={rnn}",
        ).train()
        update = TrainingStep(model, build_optimizer(model, 1e-3), 1.0, 0.1, "tokens", "bf16")

        def train_and_search(model: Seq2Seq = model, update: TrainingStep = update) -> None:
            update(batch)
            with torch.no_grad():
                greedy_search(model.eval(), batch)
                beam_search(model, batch, SearchSettings(beam_size=3))

        called = fast_code_called(train_and_search)
        modules = {type(module).__module__ for module in model.modules()}
        if kernels == "reference":
            assert not called, sorted(called)
            assert not {name for name in modules if name.startswith("seq2seq.fast")}
        else:
            backward = "recurrence.py:backward"  # the encoder's GRULoop, or its LSTM's products
            assert {"dropout.py:forward", "recurrence.py:run_encoder_rnn"} <= called
            assert backward in called or "stepwise.py:backward" in called
            assert "seq2seq.fast.modules" in modules


def test_auto_is_the_fast_kernels_on_cpu_and_the_reference_elsewhere() -> None:
    """build_model gives the reference modules; accelerate swaps the fast ones in on CPU only."""
    cfg = model_config("embed_size=8", "decoder.rnn.hidden=12", "attention.name=bahdanau")
    built = build_model(cfg, VOCAB, VOCAB)
    assert built.kernels == "reference" and type(built.encoder) is RNNEncoder
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert accelerate(build_model(cfg, VOCAB, VOCAB), "auto", cuda).kernels == "reference"
    assert accelerate(build_model(cfg, VOCAB, VOCAB), "reference", cpu).kernels == "reference"
    fast = accelerate(built, "auto", cpu)
    assert fast is built and fast.kernels == "fast" and type(fast.encoder) is not RNNEncoder
    with pytest.raises(ValueError, match=r"model.kernels must be one of \('auto', 'reference'\)"):
        accelerate(build_model(cfg, VOCAB, VOCAB), "fastest", cpu)


@pytest.mark.parametrize(("attention", "style"), [("bahdanau", "bahdanau"), ("general", "luong")])
def test_a_checkpoint_loads_into_either_kernels_and_searches_alike(
    attention: str, style: str
) -> None:
    """The same state dict keys (those of checkpoints written before the fast kernels had a
    package of their own), and greedy and beam search give the same words and scores."""
    fast = small_model(attention, style=style, kernels="auto").double()
    reference = small_model(attention, style=style, kernels="reference").double()
    with torch.no_grad():
        for parameter in fast.parameters():
            parameter.add_(torch.rand_like(parameter) * 0.2)  # other weights than the seed's
    reference.load_state_dict(fast.state_dict())
    assert list(reference.state_dict()) == list(fast.state_dict())
    batch = padded_batch()
    with torch.no_grad():
        results = [
            (
                greedy_search(model, batch),
                beam_search(model, batch, SearchSettings(beam_size=3, nbest=3)),
            )
            for model in (fast, reference)
        ]
    (greedy, beams), (greedy_reference, beams_reference) = results
    for mine, expected in zip(
        greedy + sum(beams, []), greedy_reference + sum(beams_reference, []), strict=True
    ):
        assert mine.tokens == expected.tokens
        assert mine.score == pytest.approx(expected.score, rel=1e-9)
        torch.testing.assert_close(mine.weights, expected.weights)


def test_a_run_resumes_with_other_kernels_or_from_a_checkpoint_written_before_them() -> None:
    saved = {"model": {"name": "rnn_attention", "kernels": "reference"}}
    check_resume_config("last.pt", saved, {"model": {"name": "rnn_attention", "kernels": "auto"}})
    check_resume_config("last.pt", {"model": {"name": "rnn_attention"}}, saved)
    with pytest.raises(ValueError, match="model.name"):
        check_resume_config("last.pt", saved, {"model": {"name": "luong", "kernels": "auto"}})
