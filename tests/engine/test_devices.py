"""GPU paths reached on a CPU: a tensor that behaves as if it lived on another device.

A CUDA run keeps the model's tensors on the GPU while ``load_checkpoint`` maps a checkpoint to
the CPU; an operation that mixes the two (``torch.equal`` included) raises there, never here.
``OnAnotherDevice`` is a CPU tensor that raises the same way whenever an operation mixes it with
a plain tensor of more than zero dimensions (CUDA lets 0-d CPU tensors through), while the
cross-device operations CUDA allows (``copy_``, ``to``, ``cpu``) work: code that passes with it
compares and computes on one device."""

from __future__ import annotations

import pytest
import torch
from torch.utils import _pytree as pytree

from bof.engine import distributed
from bof.engine.checkpoint import load_checkpoint
from bof.engine.train import Trainer

CROSS_DEVICE = {torch.Tensor.copy_, torch.Tensor.to, torch.Tensor.cpu}


class OnAnotherDevice(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cpu:
            with torch._C.DisableTorchFunctionSubclass():
                return args[0].clone()
        tensors = [value for value in pytree.tree_leaves((args, kwargs)) if isinstance(value, torch.Tensor)]
        if (
            func not in CROSS_DEVICE
            and any(isinstance(t, cls) for t in tensors)
            and any(not isinstance(t, cls) and t.dim() > 0 for t in tensors)
        ):
            raise RuntimeError(f"{getattr(func, '__name__', func)}: Expected all tensors to be on the same device")
        return super().__torch_function__(func, types, args, kwargs)


def buffers_on_another_device(module: torch.nn.Module) -> None:
    """Every buffer (anchors, BN statistics) as if the model had been moved to the GPU."""
    for owner in module.modules():
        for name, buffer in list(owner._buffers.items()):
            if buffer is not None:
                owner._buffers[name] = buffer.as_subclass(OnAnotherDevice)


def test_the_stand_in_raises_where_cuda_would():
    elsewhere, here = torch.ones(3).as_subclass(OnAnotherDevice), torch.ones(3)
    with pytest.raises(RuntimeError, match="same device"):
        torch.equal(here, elsewhere)
    assert torch.equal(here, elsewhere.cpu())
    assert isinstance(elsewhere * torch.tensor(2.0), OnAnotherDevice)  # a 0-d CPU tensor is allowed


def test_a_yolov3_resume_compares_its_anchors_on_one_device(tiny_config, tmp_path):
    """Issue 28, item 1: the resume check of the anchors compared the CPU-loaded checkpoint's
    tensor with the model's buffer on the GPU (torch.equal raised there: every YOLOv3 resume of
    a GPU run failed)."""
    _, config = tiny_config("yolov3", ("optim.epochs=1",))
    context = distributed.Context(0, 1, 0, torch.device("cpu"))
    Trainer(config, tmp_path, context, progress=False).fit()
    resumed = Trainer(config, tmp_path, context, progress=False)
    buffers_on_another_device(resumed.model)
    assert resumed.resume()
    assert torch.equal(resumed.model.anchors.cpu(), load_checkpoint(tmp_path / "checkpoint.pt")["model"]["anchors"])


def test_a_checkpoint_written_without_amp_resumes_with_amp(tiny_config, tmp_path):
    """Issue 28: AMP runs on CUDA only, and a disabled GradScaler saves an empty state, which an
    enabled one refused to load: a CPU run resumed on a GPU (``run.device`` may change between a
    run and its resume) failed. It starts a fresh loss scale instead."""
    _, config = tiny_config("yolov3", ("optim.epochs=1",))
    context = distributed.Context(0, 1, 0, torch.device("cpu"))
    Trainer(config, tmp_path, context, progress=False).fit()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["scaler"] == {}
    resumed = Trainer(config, tmp_path, context, progress=False)
    resumed.scaler = torch.amp.GradScaler("cpu", enabled=True)  # what a CUDA run builds
    assert resumed.resume()
    assert resumed.scaler.get_scale() == 65536.0  # GradScaler's initial scale
