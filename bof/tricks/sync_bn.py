"""Synchronized Batch Normalization (§3.5), and the unsynchronized per-device baseline.

Three ways to compute BN statistics during training, chosen by ``convert_batchnorm``:

* ``"sync"``: over the whole global batch. On CUDA under DDP this is
  ``torch.nn.SyncBatchNorm``. torch refuses SyncBatchNorm on CPU, so under the gloo
  backend ``CPUSyncBatchNorm`` all-reduces the batch statistics itself, with the gradient
  flowing back through the all-reduce. In a single process the batch already is global,
  so plain BN is synchronized BN.
* ``"group"``: over groups of ``group_size`` consecutive images, as each GPU of an
  unsynchronized multi-GPU run would see its own small batch. This reproduces the
  paper's baseline ("BN on each device's batch") on one machine, so Table 2's
  "+ synchronize BN" row can be measured honestly without the GPUs: baseline =
  ``group`` with the per-device batch, "+ SyncBN" = ``sync``.
* ``"plain"``: leave the model as it is.

Inference uses the running statistics in every mode, so none of this costs anything at
test time.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from bof.errors import ConfigError

__all__ = ["CPUSyncBatchNorm", "GroupBatchNorm2d", "convert_batchnorm", "plain_batchnorm"]

BatchNormMode = Literal["plain", "sync", "group"]


class AllReduceSum(torch.autograd.Function):
    """A differentiable sum over the default process group: the sum's gradient is the sum of
    the ranks' gradients. (What ``torch.distributed.nn.functional.all_reduce`` did; torch
    deprecates it for a private module.)"""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are all-reduced over the default process group.

    Two all-reduces (the mean, then the centred sum of squares) keep the variance as
    accurate as single-process BN; `AllReduceSum` makes them differentiable.
    Ranks may hold different numbers of images.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_available() or not dist.is_initialized():
            return super().forward(x)
        channels = x.shape[1]
        count = torch.tensor([x.numel() / channels], dtype=x.dtype, device=x.device)
        total = AllReduceSum.apply(torch.cat([x.sum(dim=(0, 2, 3)), count]))
        mean = total[:channels] / total[channels]
        centred = x - mean[None, :, None, None]
        var = AllReduceSum.apply(centred.pow(2).sum(dim=(0, 2, 3))) / total[channels]
        if self.track_running_stats:
            with torch.no_grad():
                n = float(total[channels])
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * n / max(n - 1, 1), momentum)
                self.num_batches_tracked += 1
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out


class GroupBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics come from groups of ``group_size`` images.

    The batch [N, C, H, W] is viewed as ``N / g`` groups; each (group, channel) pair is
    normalised as a channel of its own by one ``F.batch_norm`` call. The running
    statistics move towards the mean over groups of each group's statistics.
    """

    def __init__(self, num_features: int, *, group_size: int, **kwargs):
        super().__init__(num_features, **kwargs)
        if group_size < 1:
            raise ConfigError(f"BN group size must be >= 1, got {group_size}")
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if not self.training or batch <= self.group_size:
            return super().forward(x)
        if batch % self.group_size:
            raise ValueError(f"batch of {batch} does not split into groups of {self.group_size}")
        # a group is a slice of the batch: a view in either memory format (no copy, channels-last
        # kept), normalised by one F.batch_norm call. Each group's affine parameters are a row of
        # their repeat, whose backward sums the groups' gradients in the order one call over all
        # groups did. Each call also leaves its group's statistics (mean, unbiased variance) in a
        # row of its own, momentum 1, in float32 or wider (under AMP x is half precision): the running
        # statistics move once, below, towards their mean over groups (a separate variance pass
        # over the batch took a fifth of a CPU step).
        count = batch // self.group_size
        weight = self.weight.repeat(count).view(count, -1) if self.affine else [None] * count
        bias = self.bias.repeat(count).view(count, -1) if self.affine else [None] * count
        tracked = self.track_running_stats
        stats = {"device": x.device, "dtype": torch.promote_types(x.dtype, torch.float32)}
        means = torch.zeros(count, x.shape[1], **stats) if tracked else [None] * count
        variances = torch.zeros(count, x.shape[1], **stats) if tracked else [None] * count
        out = torch.cat(
            [
                F.batch_norm(group, mean, var, group_weight, group_bias, training=True, momentum=1.0, eps=self.eps)
                for group, mean, var, group_weight, group_bias in zip(
                    x.split(self.group_size), means, variances, weight, bias, strict=True
                )
            ]
        )
        if tracked:
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
                self.running_mean.lerp_(means.mean(0), momentum)
                self.running_var.lerp_(variances.mean(0), momentum)
                self.num_batches_tracked += 1
        return out


def _replace_batchnorm(module: nn.Module, make) -> nn.Module:
    """Swap every BatchNorm2d for ``make(bn)``, keeping parameters and buffers."""
    if isinstance(module, nn.BatchNorm2d) and type(module) in (nn.BatchNorm2d, CPUSyncBatchNorm, GroupBatchNorm2d):
        replacement = make(module).to(module.weight.device if module.affine else module.running_mean.device)
        replacement.load_state_dict(module.state_dict())
        replacement.train(module.training)
        return replacement
    for name, child in module.named_children():
        setattr(module, name, _replace_batchnorm(child, make))
    return module


def _options(bn: nn.BatchNorm2d) -> dict:
    return {"eps": bn.eps, "momentum": bn.momentum, "affine": bn.affine, "track_running_stats": bn.track_running_stats}


def convert_batchnorm(model: nn.Module, mode: BatchNormMode, *, group_size: int = 1) -> nn.Module:
    """Return ``model`` with its BatchNorm2d layers computing statistics as ``mode`` says."""
    if mode == "plain":
        return model
    if mode == "group":
        return _replace_batchnorm(
            model, lambda bn: GroupBatchNorm2d(bn.num_features, group_size=group_size, **_options(bn))
        )
    if mode != "sync":
        raise ConfigError(f"batch norm mode must be 'plain', 'sync' or 'group', got {mode!r}")
    if not (dist.is_available() and dist.is_initialized()):
        return model  # one process, no group: it holds the whole batch
    if dist.get_backend() == "nccl":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _replace_batchnorm(model, lambda bn: CPUSyncBatchNorm(bn.num_features, **_options(bn)))


def plain_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every synchronized or grouped BN turned back into
    ``nn.BatchNorm2d``: at inference they are all the same layer, so the deployed model
    is the baseline architecture (the paper's "free lunch")."""
    import copy

    model = copy.deepcopy(model)

    def make(bn: nn.BatchNorm2d) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(bn.num_features, **_options(bn))

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, (nn.SyncBatchNorm, CPUSyncBatchNorm, GroupBatchNorm2d)):
            replacement = make(module).to(
                module.running_mean.device if module.track_running_stats else module.weight.device
            )
            replacement.load_state_dict(module.state_dict())
            replacement.train(module.training)
            return replacement
        for name, child in module.named_children():
            setattr(module, name, convert(child))
        return module

    return convert(model)
