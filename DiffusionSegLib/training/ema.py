"""Exponential moving average of the weights: the weights that are sampled from and fine-tuned."""

from __future__ import annotations

import torch


class EMA:
    """``shadow = decay * shadow + (1 - decay) * weights`` after every optimiser step.

    The decay ramps up as ``min(decay, (1 + step) / (10 + step))`` so that a short run
    (a few hundred CPU steps) is not dominated by its random initialisation.
    Only trainable parameters are averaged; buffers (e.g. BatchNorm statistics) and
    frozen parameters (a probing backbone) are copied, so frozen weights stay bit-identical.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        for name, value in model.state_dict().items():
            if name in trainable and value.dtype.is_floating_point:
                self.shadow[name].mul_(decay).add_(value.detach().float(), alpha=1 - decay)
            else:
                self.shadow[name].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:3]}")
        self.shadow = {k: state[k].detach().clone().float() for k in self.shadow}
