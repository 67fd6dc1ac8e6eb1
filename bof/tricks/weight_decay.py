"""Weight decay by parameter group: none on biases and normalisation layers when a recipe says so
(GluonCV's ``--no-wd``, a refinement of [8]); the optimizers of pretraining and training take these groups."""

from __future__ import annotations

from torch import nn

__all__ = ["parameter_groups"]

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def parameter_groups(model: nn.Module, weight_decay: float, *, decay_norm_and_bias: bool = True) -> list[dict]:
    """Optimizer groups; with ``decay_norm_and_bias=False`` biases and normalisation
    parameters get no weight decay (a common refinement, [8])."""
    if decay_norm_and_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            (no_decay if isinstance(module, NORM_LAYERS) or name == "bias" else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
