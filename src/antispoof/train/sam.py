"""Sharpness-aware minimisation around any torch optimiser: SAM (Foret et al., ICLR 2021) and its
adaptive form ASAM (Kwon et al., ICML 2021); the config's `optim.sam`.

Why: plain descent settles in whichever minimum it reaches. SAM minimises the worst loss within a
radius rho of the weights instead, which steers training towards flat minima, and flat minima
generalise better; Shim et al. (Interspeech 2023) found it improves anti-spoofing detectors on data
sets they were not trained on, the weakness of every detector here.

One step costs two forward-backward passes on the same batch:
1. the gradient g at the weights w;
2. an ascent step to w + e: SAM e = rho g / ||g||; ASAM e = rho T^2 g / ||T g|| with T = |w| + eta
   per weight (biases included), so the radius follows each weight's size and rescaling a layer
   does not change the step;
3. the gradient at w + e, then the weights go back to exactly w;
4. the base optimiser steps from w with that second gradient.

The wrapper keeps no optimiser state: checkpoints, learning-rate schedulers and Lightning keep
seeing the base optimiser(s). The norm runs over every parameter of the wrapped optimisers at once.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Callable, Iterable, Iterator, Mapping

import torch
from torch import nn


@dataclass(frozen=True)
class SAMConfig:
    """`optim.sam`: off by default; rho about 0.05 for SAM, 0.5-2 for ASAM (its T shrinks e)."""

    enabled: bool = False
    rho: float = 0.05
    adaptive: bool = False
    eta: float = 0.01

    @classmethod
    def from_options(cls, options: Mapping | None) -> "SAMConfig":
        """From a config's `optim.sam` (None: a config written before it existed, so off)."""
        options = dict(options or {})
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"optim.sam: unknown key(s) {unknown}; known: enabled, rho, adaptive, eta")
        config = cls(**options)
        if config.enabled and not config.rho > 0:
            raise ValueError(f"optim.sam.rho must be > 0 (got {config.rho})")
        if config.eta < 0:
            raise ValueError(f"optim.sam.eta must be >= 0 (got {config.eta})")
        return config


class SAM:
    """The two-pass step for one or more optimisers (Lightning's manual path calls `perturb` and
    `restore` around its second backward; a plain loop calls `step(closure)`)."""

    def __init__(self, optimisers: torch.optim.Optimizer | Iterable[torch.optim.Optimizer], rho: float = 0.05,
                 adaptive: bool = False, eta: float = 0.01):
        self.optimisers = [optimisers] if isinstance(optimisers, torch.optim.Optimizer) else list(optimisers)
        self.rho, self.adaptive, self.eta = rho, adaptive, eta
        self._origin: list[tuple[torch.Tensor, torch.Tensor]] = []

    @classmethod
    def from_config(cls, optimisers, config: SAMConfig) -> "SAM":
        return cls(optimisers, rho=config.rho, adaptive=config.adaptive, eta=config.eta)

    def parameters(self) -> list[torch.Tensor]:
        """Every parameter the optimisers hold, once each, in their order (the same on every rank)."""
        seen, params = set(), []
        for optimiser in self.optimisers:
            for group in optimiser.param_groups:
                for p in group["params"]:
                    if id(p) not in seen:
                        seen.add(id(p))
                        params.append(p)
        return params

    def _scaled(self, p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """T x: ASAM's per-weight scaling (|w| + eta), the identity for SAM."""
        return x * (p.detach().abs() + self.eta) if self.adaptive else x

    @torch.no_grad()
    def perturb(self) -> bool:
        """Move the weights from w to w + e with their current (first-pass) gradients. Returns False
        and moves nothing when the gradient is zero or not finite (a float16 overflow: the loss
        scaler skips that step anyway). e is scale-free in g, so a loss scaler's factor cancels."""
        if self._origin:
            raise RuntimeError("SAM.perturb called twice without restore")
        params = [p for p in self.parameters() if p.grad is not None]
        if not params:
            return False
        norm = torch.linalg.vector_norm(torch.stack([_norm(self._scaled(p, p.grad)) for p in params]))
        if not bool(torch.isfinite(norm) & (norm > 0)):
            return False
        for p in params:
            self._origin.append((p, p.detach().clone()))
            p.add_((self._scaled(p, self._scaled(p, p.grad)) * (self.rho / norm)).to(p.dtype))
        return True

    @torch.no_grad()
    def restore(self) -> None:
        """Put back exactly the weights `perturb` moved (copies, not w + e - e: no rounding)."""
        for p, origin in self._origin:
            p.copy_(origin)
        self._origin.clear()

    def zero_grad(self) -> None:
        for optimiser in self.optimisers:
            optimiser.zero_grad(set_to_none=True)

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One whole SAM step in a plain torch loop. `closure` computes the batch's loss and
        back-propagates it (gradients zeroed first, torch's closure convention); it runs twice.
        Returns the loss at w."""
        loss = closure()
        if self.perturb():
            try:
                self.zero_grad()
                closure()
            finally:
                self.restore()
        for optimiser in self.optimisers:
            optimiser.step()
        return loss


def _norm(x: torch.Tensor) -> torch.Tensor:
    """The 2-norm, summed in float32 at least (a float16 gradient's squares overflow)."""
    return torch.linalg.vector_norm(x, dtype=torch.promote_types(x.dtype, torch.float32))


@contextmanager
def running_statistics_kept(module: nn.Module) -> Iterator[None]:
    """The second pass sees the same batch again: BatchNorm's running statistics keep only the
    first pass's update (they are put back as it left them)."""
    saved = [(b, b.detach().clone()) for m in module.modules() if getattr(m, "track_running_stats", False)
             for b in m.buffers(recurse=False)]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
