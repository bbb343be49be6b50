"""Operands shared by every step of the teacher-forced loop, with their gradient summed once.

Inside the decoder loop the same weight W multiplies a new input at every step,
y_t = x_t Wᵀ. Plain autograd computes dW_t = g_tᵀ x_t at each step of the backward pass and adds
it into W's gradient: T thin products (inner size = batch) and T additions of a weight-sized
tensor. Since dW = Σ_t g_tᵀ x_t = Gᵀ X, :class:`StepwiseProducts` keeps each step's input and
output gradient instead and makes one (out, T·batch) × (T·batch, in) product. The same holds
for the annotations' gate share V in Bahdanau's wiring, a_t V: dV = Σ_t a_tᵀ g_t is one batched
product over the steps.

The summed product runs in the backward of a gate between the operand and the steps: every
step takes the gate's output as an input, so autograd runs the gate only after the backward of
every step that contributed to the loss. Under autocast the operand is cast once per batch,
not once per step.

The reference decoder's step is plain ``nn.Linear`` calls and ``torch.bmm``: inside
:class:`SummedOverSteps`, a ``TorchFunctionMode``, those calls run through one
:class:`StepwiseProducts` without a line of the step changing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from seq2seq.device import product_dtype
from seq2seq.fast.row_blocks import weight_gradient


class StepwiseProducts:
    """One teacher-forced pass: per shared operand, the steps' inputs and output gradients.

    Create one per forward pass (never reuse it), and call :meth:`linear` or :meth:`mix` at
    every step in order.
    """

    def __init__(self) -> None:
        # Per operand: its steps' record, and the operand through _Gate (an input of every
        # step). Kept here, not in the record, which the graph holds: no reference cycle.
        self._operands: dict[int, tuple[_SharedOperand, torch.Tensor]] = {}

    def linear(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``F.linear(x, weight, bias)`` for one step, x (batch, in) → (batch, out)."""
        out = self._apply(LINEAR, weight, x)
        return out if bias is None else out + bias

    def batched_linear(self, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One weight per group: (groups, batch, in) × (groups, out, in)ᵀ → (groups, batch, out)."""
        return self._apply(BATCHED_LINEAR, weight, x)

    def mix(self, weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``weights @ values`` for one step: (batch, 1, src) × (batch, src, d) → (batch, 1, d)."""
        return self._apply(MIX, values, weights)

    def _apply(self, product: Product, operand: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and operand.requires_grad):
            return product.forward(x, operand)
        if id(operand) not in self._operands:
            shared = _SharedOperand(operand, product)
            self._operands[id(operand)] = shared, _Gate.apply(operand, shared)
        shared, gated = self._operands[id(operand)]
        return _Step.apply(x, gated, shared)


class Product(NamedTuple):
    """A product of a step's input x with a shared operand, and its two gradients."""

    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, operand) → y
    input_grad: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (g, operand) → dx
    # (every step's g, every step's x) → d operand, summed over the steps
    operand_grad: Callable[[list[torch.Tensor], list[torch.Tensor]], torch.Tensor]


def _linear_forward(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x @ weight.t()


def _linear_input_grad(grad: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return grad @ weight


def _linear_weight_grad(grads: list[torch.Tensor], inputs: list[torch.Tensor]) -> torch.Tensor:
    return weight_gradient(torch.cat(grads), torch.cat(inputs))


def _batched_linear_forward(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.bmm(x, weight.transpose(1, 2))


def _batched_linear_weight_grad(
    grads: list[torch.Tensor], inputs: list[torch.Tensor]
) -> torch.Tensor:
    return torch.bmm(torch.cat(grads, 1).transpose(1, 2), torch.cat(inputs, 1))


def _mix_input_grad(grad: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.bmm(grad, values.transpose(1, 2))


def _mix_values_grad(grads: list[torch.Tensor], inputs: list[torch.Tensor]) -> torch.Tensor:
    return torch.bmm(torch.cat(inputs, 1).transpose(1, 2), torch.cat(grads, 1))


LINEAR = Product(_linear_forward, _linear_input_grad, _linear_weight_grad)
BATCHED_LINEAR = Product(_batched_linear_forward, torch.bmm, _batched_linear_weight_grad)
MIX = Product(torch.bmm, _mix_input_grad, _mix_values_grad)


class _SharedOperand:
    def __init__(self, operand: torch.Tensor, product: Product):
        self.dtype = operand.dtype
        self.value = operand.detach().to(product_dtype(operand))  # cast once per batch
        self.product = product
        self.inputs: list[torch.Tensor] = []
        self.grads: list[torch.Tensor | None] = []

    def step(self, ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to(self.value.dtype)
        ctx.shared, ctx.index = self, len(self.inputs)
        self.inputs.append(x)
        self.grads.append(None)
        with torch.autocast(self.value.device.type, enabled=False):
            return self.product.forward(x, self.value)

    def backward(self, ctx: Any, grad: torch.Tensor) -> torch.Tensor | None:
        grad = grad.to(self.value.dtype)
        self.grads[ctx.index] = grad
        return self.product.input_grad(grad, self.value) if ctx.needs_input_grad[0] else None

    def operand_gradient(self) -> torch.Tensor:
        """Σ_t over the steps whose output reached the loss (the others add nothing)."""
        used = [t for t, grad in enumerate(self.grads) if grad is not None]
        grads = [self.grads[t] for t in used]
        gradient = self.product.operand_grad(grads, [self.inputs[t] for t in used])
        self.inputs, self.grads = [], []  # free them now, not when the graph goes
        return gradient.to(self.dtype)


class _Gate(torch.autograd.Function):
    """Identity forward; backward (after every step's) returns the summed operand gradient."""

    @staticmethod
    def forward(ctx: Any, operand: torch.Tensor, shared: _SharedOperand) -> torch.Tensor:
        ctx.shared = shared
        ctx.set_materialize_grads(False)  # the steps pass no gradient through it
        return operand.view_as(operand)

    @staticmethod
    def backward(ctx: Any, _: torch.Tensor | None) -> tuple[torch.Tensor, None]:
        return ctx.shared.operand_gradient(), None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, gated: torch.Tensor, shared: _SharedOperand):
        return shared.step(ctx, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        return ctx.shared.backward(ctx, grad), None, None


class SummedOverSteps(TorchFunctionMode):
    """Inside the block, one teacher-forced pass's per-step products share their gradients.

    Every ``F.linear`` (an ``nn.Linear`` call) on a (batch, in) input, and every
    ``torch.bmm(weights, operand)`` whose operand is one of ``shared`` (the memory the steps
    mix), runs through one :class:`StepwiseProducts`; every other call runs as it is. Enter it
    around the loop over the steps only: products over all steps at once, and anything before
    or after the loop, keep plain autograd.
    """

    def __init__(self, shared: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.products = StepwiseProducts()
        self.shared = shared

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if not kwargs:
            if func is F.linear and args[0].dim() == 2:
                return self.products.linear(*args)
            if func is torch.bmm and any(args[1] is operand for operand in self.shared):
                return self.products.mix(*args)
        return func(*args, **(kwargs or {}))
