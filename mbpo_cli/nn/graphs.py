"""CUDA-graph capture of a training step, checked against eager execution, with a logged fallback.

A *step* is a function of input tensors that updates parameters and optimizer states in place and
returns tensors (SAC's update). Captured, it runs as one graph replay instead of a few hundred kernel
launches, which is what bounds small networks on a GPU. Capturing changes nothing that is learned:
the warm-up iterations capture needs are undone (every parameter, buffer and optimizer state is
restored in place), and before the graph is used one replay is compared with one eager step on the
same inputs. A capture error or a disagreement leaves the step eager, and the reason is reported.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import torch
from torch import nn

Out = TypeVar("Out")

WARMUP_ITERATIONS = 3
RTOL, ATOL = 1e-4, 1e-6
"""Replay and eager results must agree this closely (the same kernels; cuBLAS may pick another
algorithm under capture, which moves the last bits)."""


def set_capturable(optimizers: Sequence[torch.optim.Optimizer], flag: bool) -> None:
    """Adam's `capturable` flag; capturable keeps the step counts on the parameters' device (moved there)."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["capturable"] = flag
            for param in group["params"] if flag else ():
                state = opt.state.get(param, {})
                step = state.get("step")
                if isinstance(step, torch.Tensor) and step.device != param.device:
                    state["step"] = step.to(param.device)


def _tensors(state: dict) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}


class TrainingState:
    """A copy of a module's parameters and buffers and its optimizers' states, restorable in place.

    Restoring keeps every tensor's identity (a captured graph holds their addresses). Optimizer states
    created after the copy (Adam's lazy state) are reset to zero, which is Adam's fresh state.
    """

    def __init__(self, module: nn.Module, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.tensors = [(t, t.detach().clone()) for t in itertools.chain(module.parameters(), module.buffers())]
        self.optimizers = [(opt, {p: _tensors(s) for p, s in opt.state.items()}) for opt in optimizers]

    @torch.no_grad()
    def restore(self) -> None:
        for tensor, saved in self.tensors:
            tensor.copy_(saved)
        for opt, saved_states in self.optimizers:
            for param, state in opt.state.items():
                saved_state = saved_states.get(param)
                for key, value in state.items():
                    if not isinstance(value, torch.Tensor):
                        continue
                    if saved_state is None:
                        value.zero_()
                    else:
                        value.copy_(saved_state[key])

    def max_error(self, module: nn.Module) -> float:
        """Largest violation of `|now - saved| <= ATOL + RTOL |saved|`, as a ratio (<= 1 is agreement)."""
        worst = 0.0
        for (tensor, saved), now in zip(self.tensors, itertools.chain(module.parameters(), module.buffers()),
                                        strict=True):
            assert tensor is now
            bound = ATOL + RTOL * saved.abs()
            ratio = float(((now.detach() - saved).abs() / bound).max()) if saved.numel() else 0.0
            worst = max(worst, ratio if math.isfinite(ratio) else math.inf)
        return worst


class CapturedStep(Generic[Out]):
    """`step` recorded as a CUDA graph on static copies of its inputs.

    Calling it copies the inputs into the static tensors and replays the graph; the returned outputs
    are the graph's static outputs, valid until the next call.
    """

    def __init__(self, step: Callable[..., Out], inputs: Sequence[torch.Tensor], module: nn.Module,
                 optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.static_inputs = [t.detach().clone() for t in inputs]
        set_capturable(optimizers, True)
        before = TrainingState(module, optimizers)
        # Warm-up and capture share one side stream, so libraries' per-stream handles (cuBLAS workspaces)
        # exist before capture starts.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_ITERATIONS):
                step(*self.static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=side):
            self.outputs = step(*self.static_inputs)
        before.restore()

    def __call__(self, *inputs: torch.Tensor) -> Out:
        for static, new in zip(self.static_inputs, inputs, strict=True):
            static.copy_(new)
        self.graph.replay()
        return self.outputs


def capture_step(step: Callable[..., Out], inputs: Sequence[torch.Tensor], module: nn.Module,
                 optimizers: Sequence[torch.optim.Optimizer]) -> tuple[CapturedStep[Out] | None, str]:
    """Capture `step` for inputs shaped like `inputs` and check one replay against one eager step.

    Returns the captured step (None to stay eager) and a one-line description of how steps will run.
    Nothing that is learned changes: the state before the call is restored in place either way.
    """
    if not all(t.is_cuda for t in inputs):
        return None, "eager (CUDA graphs need a CUDA device)"
    device = inputs[0].device
    start = TrainingState(module, optimizers)
    try:
        with torch.cuda.device(device):
            captured = CapturedStep(step, inputs, module, optimizers)
        torch.cuda.synchronize(device)
    except RuntimeError as err:
        start.restore()
        set_capturable(optimizers, False)
        return None, f"eager (CUDA graph capture failed: {str(err).splitlines()[0]})"
    reference = TrainingState(module, optimizers)
    step(*inputs)
    eager = TrainingState(module, optimizers)
    reference.restore()
    captured(*inputs)
    error = eager.max_error(module)
    reference.restore()
    if error > 1.0:
        set_capturable(optimizers, False)
        return None, f"eager (CUDA graph replay disagreed with eager execution: {error:.1f}x the tolerance)"
    return captured, "CUDA graph (one replay matched eager execution)"
