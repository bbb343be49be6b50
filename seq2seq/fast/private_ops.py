"""The private torch operators the fast paths call, each tried once before it is trusted.

torch promises nothing about these (a leading underscore, or ``torch.ops.mkldnn``): a release
may rename or change one, and oneDNN's packed bf16 linear refuses CPUs without AVX512BW/VL/DQ or
AVX-NE-CONVERT. Each is tried once per process, on first use, on a tiny input against the public
computation it stands for. Where it is missing, raises or disagrees, its caller takes the plain
path (the same numbers up to rounding, a little slower) and one warning line names the operator
and why. Tested with torch 2.13.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch
from torch.nn import functional as F

log = logging.getLogger(__name__)


def softmax_backward(grad_weights: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """∂L/∂e from ∂L/∂a for a = softmax(e) over the last dimension: a ⊙ (∂L/∂a − Σ_j a_j ∂L/∂a_j).

    ``torch._softmax_backward_data`` is one pass in place of the formula's three.
    """
    if usable("softmax_backward"):
        return torch._softmax_backward_data(grad_weights, weights, -1, weights.dtype)
    return _plain_softmax_backward(grad_weights, weights)


def masked_scale(x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
    """x ⊙ keep · scale (dropout with the mask ``keep``), in one pass where the op allows."""
    if usable("masked_scale"):
        return torch.ops.aten.native_dropout_backward(x, keep, scale)
    return x * keep * scale


def packed_linear_usable() -> bool:
    """Whether oneDNN's packed bf16 linear (``seq2seq.fast.prepacked``) works here."""
    return usable("packed_linear")


def _plain_softmax_backward(grad_weights: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return weights * (grad_weights - (grad_weights * weights).sum(-1, keepdim=True))


def _inputs(*shape: int) -> torch.Tensor:
    """Trial inputs from a generator of their own: trying an operator in the middle of a run
    must not move the global random state (dropout masks, batches, a resumed run's numbers)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))


def _try_softmax_backward() -> bool:
    weights = torch.softmax(_inputs(3, 5).double(), -1)
    grad = _inputs(5, 3).double().view(3, 5)
    fast = torch._softmax_backward_data(grad, weights, -1, weights.dtype)
    return torch.allclose(fast, _plain_softmax_backward(grad, weights))


def _try_masked_scale() -> bool:
    x = _inputs(4, 6)
    keep = _inputs(6, 4).view(4, 6) > -0.5
    fast = torch.ops.aten.native_dropout_backward(x, keep, 1.25)
    return torch.allclose(fast, x * keep * 1.25)


def _try_packed_linear() -> bool:
    x, weight, bias = _inputs(4, 16), _inputs(8, 16), _inputs(8)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.to(torch.bfloat16), 4)
    fast = torch.ops.mkldnn._linear_pointwise(
        x.to(torch.bfloat16), packed, bias.to(torch.bfloat16), "none", [], ""
    )
    return torch.allclose(fast.float(), F.linear(x, weight, bias), atol=0.2, rtol=0.05)


# name → (the operator, what it serves, a tiny trial against the plain computation)
_TRIALS: dict[str, tuple[str, str, Callable[[], bool]]] = {
    "softmax_backward": (
        "torch._softmax_backward_data",
        "the attention loops' softmax gradient",
        _try_softmax_backward,
    ),
    "masked_scale": (
        "torch.ops.aten.native_dropout_backward",
        "dropout's masks",
        _try_masked_scale,
    ),
    "packed_linear": (
        "torch.ops.mkldnn._reorder_linear_weight / _linear_pointwise",
        "bf16 search from packed weights",
        _try_packed_linear,
    ),
}


@functools.cache
def usable(name: str) -> bool:
    """Whether the private operator ``name`` works here; the first call tries it, and warns once
    where it does not."""
    operator, serves, trial = _TRIALS[name]
    try:
        works = trial()
        problem = "it disagrees with the plain computation"
    except (AttributeError, NotImplementedError, RuntimeError, TypeError) as error:
        works = False
        problem = " ".join(f"{type(error).__name__}: {error}".split())
    if not works:
        log.warning(
            "%s is not usable with torch %s on this machine (%s); %s take the plain path",
            operator,
            torch.__version__,
            problem,
            serves,
        )
    return works
