"""``model.kernels``: which fast kernel stands in for which reference module, and where.

``build_model`` builds the reference modules (``seq2seq/model/``) only, so the parameters, their
initial values and the random numbers drawn are the same either way, and the model knows
nothing of this package. Each entry point (training, the benchmark, evaluation and translation,
the explorer through them) then calls :func:`accelerate`: with ``model.kernels=auto`` on CPU,
where each was measured to pay (docs/speed.md), it swaps in the fast kernels of this package;
``reference`` (and ``auto`` on other devices) trains and decodes through the plain modules.
The swap is the one place that decides: no model class looks at the device or at which
kernels it runs.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from seq2seq.fast.dropout import Dropout
from seq2seq.fast.modules import (
    FastBahdanauAttention,
    FastBahdanauDecoder,
    FastLuongDecoder,
    FastRNNEncoder,
    FusedBahdanauDecoder,
    FusedLuongDecoder,
)
from seq2seq.fast.prepacked import prepacked_for_search
from seq2seq.fast.row_blocks import BlockedLinear
from seq2seq.model.attention import BahdanauAttention
from seq2seq.model.decoder import BahdanauDecoder, LuongDecoder, RNNDecoder
from seq2seq.model.encoder import RNNEncoder

KERNELS = ("auto", "reference")


def fast_kernels_pay(kernels: str, device: torch.device) -> bool:
    """Whether ``model.kernels`` asks for the fast kernels on ``device``."""
    if kernels not in KERNELS:
        raise ValueError(f"model.kernels must be one of {KERNELS}, got {kernels!r}")
    return kernels == "auto" and device.type == "cpu"


def accelerate(model: nn.Module, kernels: str, device: torch.device) -> nn.Module:
    """``model`` (built by ``build_model``) with the fast kernels where ``kernels`` asks for
    them on ``device``, the device it will run on; ``model.kernels`` says which it got."""
    if fast_kernels_pay(kernels, device):
        use_fast_kernels(model)
        model.kernels = "fast"
        # Searches pack the weights once per test set where that pays (bf16 on a native CPU).
        model.search_scope = partial(prepacked_for_search, model, device)  # type: ignore[method-assign]
    return model


def use_fast_kernels(model: nn.Module) -> None:
    """Turn ``model``'s reference modules into their fast subclasses, in place.

    A fast subclass adds no parameter or buffer, so the module keeps its own and only its class
    changes (as ``torch.nn.utils.parametrize`` does); every ``nn.Dropout`` is replaced by the
    cheaper :class:`~seq2seq.fast.dropout.Dropout`. Both keep the state dict's keys.
    """
    swaps = [(module, fast_class(module)) for module in model.modules()]
    for module, fast in swaps:
        if fast is not None:
            assert issubclass(fast, type(module)), f"{fast.__name__} must subclass its reference"
            module.__class__ = fast
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p))


def fast_class(module: nn.Module) -> type[nn.Module] | None:
    """The fast subclass that stands in for ``module``, or None where it stays as it is.

    The hand-written loops compute exactly the additive scorer of a GRU decoder: the exact
    classes are matched, so a subclass with other equations keeps the reference.
    """
    kind = type(module)
    if kind is nn.Linear:
        return BlockedLinear
    if kind is RNNEncoder:
        return FastRNNEncoder
    if kind is BahdanauAttention:
        return FastBahdanauAttention
    if kind is BahdanauDecoder:
        return FusedBahdanauDecoder if additive_gru(module) else FastBahdanauDecoder
    if kind is LuongDecoder:
        fused = module.input_feeding and additive_gru(module)
        return FusedLuongDecoder if fused else FastLuongDecoder
    return None


def additive_gru(decoder: RNNDecoder) -> bool:
    """A GRU decoder with the additive scorer: what the hand-written loops compute."""
    return not decoder.is_lstm and type(decoder.attention) is BahdanauAttention
