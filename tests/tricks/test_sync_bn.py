"""Synchronized BN (§3.5): two real gloo processes on 127.0.0.1 equal one process with plain BN
on the concatenated batch; the per-device ("group") baseline equals BN on each group."""

from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from bof.errors import ConfigError
from bof.tricks.sync_bn import CPUSyncBatchNorm, GroupBatchNorm2d, convert_batchnorm

SPLIT = (3, 5)  # ranks hold different numbers of images


def batch_and_grad():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(sum(SPLIT), 4, 5, 6, generator=generator) * 3 + 1
    upstream = torch.randn(sum(SPLIT), 4, 5, 6, generator=generator)
    return x, upstream


def make_bn():
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 0.3]))
    return bn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = convert_batchnorm(nn.Sequential(make_bn()), "sync")
        assert isinstance(model[0], CPUSyncBatchNorm)
        x, upstream = batch_and_grad()
        start = sum(SPLIT[:rank])
        mine = x[start : start + SPLIT[rank]].clone().requires_grad_(True)
        out = model(mine)
        (out * upstream[start : start + SPLIT[rank]]).sum().backward()
        weight_grad, bias_grad = model[0].weight.grad.clone(), model[0].bias.grad.clone()
        dist.all_reduce(weight_grad)
        dist.all_reduce(bias_grad)  # what DDP would do with the parameter gradients (before averaging)
        torch.save(
            {
                "out": out.detach(),
                "x_grad": mine.grad,
                "weight_grad": weight_grad,
                "bias_grad": bias_grad,
                "running_mean": model[0].running_mean,
                "running_var": model[0].running_var,
            },
            os.path.join(folder, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one_process_on_the_whole_batch(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    x, upstream = batch_and_grad()
    x = x.clone().requires_grad_(True)
    bn = make_bn()
    out = bn(x)
    (out * upstream).sum().backward()
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), out.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]), x.grad, atol=1e-5, rtol=1e-5)
    for r in ranks:
        torch.testing.assert_close(r["weight_grad"], bn.weight.grad, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(r["bias_grad"], bn.bias.grad, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(r["running_mean"], bn.running_mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(r["running_var"], bn.running_var, atol=1e-5, rtol=1e-5)


def test_group_mode_equals_bn_on_each_group():
    x, upstream = batch_and_grad()
    x = x[:8].clone().requires_grad_(True)
    grouped = convert_batchnorm(nn.Sequential(make_bn()), "group", group_size=2)
    assert isinstance(grouped[0], GroupBatchNorm2d)
    out = grouped(x)
    (out * upstream[:8]).sum().backward()
    outs, grads, weight_grad = [], [], torch.zeros(4)
    means, variances = [], []
    for group in range(4):
        bn = make_bn()
        part = x.detach()[2 * group : 2 * group + 2].clone().requires_grad_(True)
        part_out = bn(part)
        (part_out * upstream[2 * group : 2 * group + 2]).sum().backward()
        outs.append(part_out.detach())
        grads.append(part.grad)
        weight_grad += bn.weight.grad
        means.append(bn.running_mean)
        variances.append(bn.running_var)
    torch.testing.assert_close(out.detach(), torch.cat(outs), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x.grad, torch.cat(grads), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grouped[0].weight.grad, weight_grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(grouped[0].running_mean, torch.stack(means).mean(0), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grouped[0].running_var, torch.stack(variances).mean(0), atol=1e-5, rtol=1e-5)
    grouped.eval()  # inference uses the running statistics, like plain BN
    reference = make_bn().eval()
    reference.load_state_dict(grouped[0].state_dict())
    torch.testing.assert_close(grouped(x.detach()), reference(x.detach()))


def test_group_mode_numbers_are_those_of_one_call_over_all_groups():
    """Groups are normalised slice by slice (views, no copy): on a contiguous batch the output and
    gradients are what bof 41caee0 computed with one F.batch_norm over the groups laid side by side
    (|values| summed in float64, exactly), the running statistics to float32 rounding; a
    channels-last batch stays channels-last and agrees to float32 rounding."""
    torch.manual_seed(0)
    cases = {}  # drawn in this order by the earlier comparison
    for shape, group_size in [((8, 16, 12, 12), 4), ((16, 64, 7, 9), 4)]:
        bn = GroupBatchNorm2d(shape[1], group_size=group_size)
        with torch.no_grad():
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
        x = torch.randn(*shape) * 3 + 1
        cases[shape] = (bn, x)
    bn, x = cases[(16, 64, 7, 9)]
    results = {}
    for channels_last in (False, True):
        layer = copy.deepcopy(bn)
        batch = x.clone().contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        batch.requires_grad_()
        out = layer(batch)
        out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
        results[channels_last] = [out.detach(), batch.grad, layer.weight.grad, layer.bias.grad]
        results[channels_last] += [layer.running_mean, layer.running_var]
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    pinned = [69359.32213091594, 3273.510985527908, 249.5142410993576, 2016.0314025878906]
    sums = [float(t.double().abs().sum()) for t in results[False]]
    assert sums[:4] == pinned
    # the running statistics come from the normalising calls themselves since 2026-12-04 (not a
    # second variance pass): the same up to float32 rounding
    assert sums[4:] == pytest.approx([6.405492290854454, 115.04037892818451], rel=1e-6)
    for plain, channels_last in zip(results[False], results[True], strict=True):
        torch.testing.assert_close(channels_last, plain, rtol=1e-5, atol=1e-4)


def test_group_of_the_whole_batch_is_plain_bn():
    x, _ = batch_and_grad()
    torch.testing.assert_close(convert_batchnorm(nn.Sequential(make_bn()), "group", group_size=8)(x), make_bn()(x))


def test_modes_in_one_process():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), make_bn())
    assert convert_batchnorm(model, "sync") is model and isinstance(
        model[1], nn.BatchNorm2d
    )  # one process: the batch is global
    assert convert_batchnorm(model, "plain") is model
    with pytest.raises(ConfigError, match="batch norm mode"):
        convert_batchnorm(model, "fast")


def test_group_bn_keeps_float32_statistics_under_autocast():
    """Issue 28: under AMP (CUDA's float16; bfloat16 is the CPU's autocast) the conv output is
    half precision while the running statistics are float32, and ``lerp_`` refused to mix them:
    every grouped-BN training step on a GPU failed. The statistics are taken in float32."""
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3), GroupBatchNorm2d(4, group_size=2)
    images = torch.randn(8, 3, 10, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = conv(images)
        bn(features)
    assert features.dtype == torch.bfloat16 and bn.running_mean.dtype == torch.float32
    groups = features.float().reshape(4, 2, 4, 8, 8)  # 4 groups of 2 images
    expected_mean = 0.1 * groups.mean(dim=(1, 3, 4)).mean(0)
    expected_var = 0.9 + 0.1 * groups.transpose(1, 2).reshape(4, 4, -1).var(dim=2, unbiased=True).mean(0)
    assert torch.allclose(bn.running_mean, expected_mean, atol=1e-6)
    assert torch.allclose(bn.running_var, expected_var, atol=1e-5)


def test_group_bn_runs_in_float64_with_float64_statistics():
    """A float64 model (a reference step, benchmarks/channels_last.py) keeps float64 throughout:
    the groups' statistics were made in float32, which F.batch_norm refused beside float64 input."""
    torch.manual_seed(0)
    bn = GroupBatchNorm2d(4, group_size=2).double()
    x = torch.randn(8, 4, 5, 5, dtype=torch.float64)
    out = bn(x)
    groups = x.reshape(4, 2, 4, 25).transpose(1, 2).reshape(4, 4, 50)  # 4 groups x 4 channels x values
    mean, var = groups.mean(dim=2, keepdim=True), groups.var(dim=2, unbiased=False, keepdim=True)
    expected = ((groups - mean) / (var + bn.eps).sqrt()).reshape(4, 4, 2, 25).transpose(1, 2).reshape(8, 4, 5, 5)
    assert out.dtype == bn.running_mean.dtype == bn.running_var.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bn.running_mean, 0.1 * groups.mean(dim=2).mean(0), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(
        bn.running_var, 0.9 + 0.1 * groups.var(dim=2, unbiased=True).mean(0), rtol=1e-12, atol=1e-14
    )
