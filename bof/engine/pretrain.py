"""``bof pretrain``: classification pretraining of a detector backbone, with or without mixup (Tables 5-6).

ImageNet layout (``<root>/train/<class>/*``, ``<root>/val/<class>/*``): the synthetic
classification set by default, ImageNet at paper scale. The recipe is GluonCV's
``train_imagenet.py`` as its model-zoo scripts ran it for Darknet-53 (``darknet53.sh``,
``darknet53-mixup.sh``): label smoothing 0.1, cosine schedule with 5 warmup epochs, Nesterov
SGD, no weight decay on BN and biases (``--no-wd``), RandomResizedCrop from 8 % of the area,
colour jitter 0.4 and PCA lighting noise 0.1, flip; mixup in its classification form
([8, 23]: per-batch ``lam ~ Beta(0.2, 0.2)``, each image mixed with the reversed batch). The
run folder gets
``backbone.pt`` (what ``model.pretrained`` of a detector run loads), ``checkpoint.pt``
(resumed automatically), ``metrics.json`` (top-1 per epoch) and ``run.json``.

Augmentation here is torchvision's ImageFolder pipeline, which draws from each worker's
torch generator; those are seeded from the run's seed and the epoch, so a run repeats
exactly for a given number of workers.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torchvision import datasets
from torchvision.transforms import v2
from tqdm import tqdm

from bof.config import PretrainConfig, to_dict
from bof.engine import distributed
from bof.engine.checkpoint import RunCheckpoints, restore_rng, rng_states, save_checkpoint
from bof.engine.lock import hold_run_folder
from bof.engine.provenance import environment
from bof.engine.train import keep_log_until
from bof.errors import BofError, ConfigError
from bof.io import atomic_write_json
from bof.models import backbone_weights, classifier
from bof.tricks.lr_schedule import build_scheduler
from bof.tricks.mixup import ClassificationMixup
from bof.tricks.random import generator_for
from bof.tricks.weight_decay import parameter_groups

BACKBONE_FORMAT = "bof-backbone-1"
CHECK_EVERY = 50  # steps between reads of the losses (under AMP; every step without)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ImageNet's RGB principal components (AlexNet [Krizhevsky 2012]; MXNet's pca_noise uses these)
PCA_EIGENVALUES = torch.tensor([55.46, 4.794, 1.148]) / 255
PCA_EIGENVECTORS = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


class Lighting(torch.nn.Module):
    """PCA lighting noise (torchvision has no such transform): draws ``alpha ~ N(0, std)`` per
    component and returns the uint8 image with the offset ``V (alpha * lambda)`` [3] that
    `to_device` adds once the image is a float in [0, 1]. The draw stays in the worker (its
    generator), the image crosses to the device as uint8 (a quarter of float32's bytes)."""

    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.std == 0:
            return image, torch.zeros(3)
        alpha = torch.randn(3) * self.std
        return image, PCA_EIGENVECTORS @ (alpha * PCA_EIGENVALUES)


def to_device(batch: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> torch.Tensor:
    """uint8 images [B, 3, H, W] and their lighting offsets [B, 3] -> the normalised float batch on
    the device (channels-last there on a GPU, as the model is): torchvision's float conversion,
    the offset, ImageNet's normalisation, in the order the per-image pipeline applied them."""
    images, offsets = (tensor.to(device, non_blocking=True) for tensor in batch)
    images = v2.functional.to_dtype(images, torch.float32, scale=True) + offsets[:, :, None, None]
    images = v2.functional.normalize(images, IMAGENET_MEAN, IMAGENET_STD)
    return images.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else images


def image_folders(config: PretrainConfig) -> tuple[datasets.ImageFolder, datasets.ImageFolder]:
    """The train and val folders; their samples are (uint8 image, lighting offset) pairs."""
    root = Path(config.data)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise BofError(
                f"{root / split}: classification folder is missing (expected <root>/train/<class>/ and <root>/val/<class>/)"
            )
    jitter = config.color_jitter
    train = v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(config.image_size, scale=(config.crop_scale_min, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter),
            Lighting(config.lighting),
        ]
    )
    val = v2.Compose(
        [v2.ToImage(), v2.Resize(config.image_size, antialias=True), v2.CenterCrop(config.image_size), Lighting(0.0)]
    )
    train_set, val_set = datasets.ImageFolder(root / "train", train), datasets.ImageFolder(root / "val", val)
    if train_set.classes != val_set.classes:
        raise BofError(f"{root}: train and val hold different classes")
    return train_set, val_set


def check_finite(losses: list[torch.Tensor], first_iteration: int, epoch: int, checkpoint: Path) -> None:
    """Raise at the first non-finite of the losses of the iterations from ``first_iteration`` on."""
    for step, value in enumerate(torch.stack(losses).tolist() if losses else []):
        if not math.isfinite(value):
            raise BofError(
                f"pretrain iteration {first_iteration + step} (epoch {epoch + 1}): loss is {value}; "
                f"stopped, last checkpoint: {checkpoint}"
            )


def no_mixup(images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
    return images, targets


@torch.no_grad()
def accuracy(model, loader, context: distributed.Context) -> float:
    model.eval()
    hits, images_seen = torch.zeros((), device=context.device), 0
    for images, labels in loader:
        logits = model(to_device(images, context.device))
        hits += (logits.argmax(1) == labels.to(context.device, non_blocking=True)).sum()
        images_seen += len(labels)
    correct = torch.stack([hits, torch.tensor(float(images_seen), device=context.device)])  # one copy
    if context.distributed:
        torch.distributed.all_reduce(correct)
    model.train()
    return float(correct[0] / correct[1])


def pretrain(config: PretrainConfig, out: str | Path, *, progress: bool = True, restart: bool = False) -> dict:
    """Pretrain (or resume) one backbone; ``restart`` sets the folder's checkpoint aside first."""
    context = distributed.setup(config.device)
    try:
        with hold_run_folder(out, "bof pretrain", context):
            return _pretrain(config, Path(out), context, progress, restart)
    finally:
        distributed.teardown()


def _pretrain(config: PretrainConfig, out: Path, context: distributed.Context, progress: bool, restart: bool) -> dict:
    torch.manual_seed(config.seed)
    train_set, val_set = image_folders(config)
    num_classes = len(train_set.classes)
    model = classifier(config.backbone, num_classes, width=config.width, depth=config.depth).to(context.device)
    if context.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    network = DistributedDataParallel(model) if context.distributed else model
    per_rank = config.batch_size // context.world_size
    iters_per_epoch = len(train_set) // config.batch_size
    if iters_per_epoch < 1 or per_rank < 1:
        raise ConfigError(
            f"pretrain.batch_size {config.batch_size} does not fit {len(train_set)} images on {context.world_size} processes"
        )
    optimizer = torch.optim.SGD(
        parameter_groups(model, config.weight_decay, decay_norm_and_bias=config.decay_norm_and_bias),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=True,
    )
    scheduler = build_scheduler(
        optimizer,
        iters_per_epoch=iters_per_epoch,
        epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
        mode="cosine",
    )
    use_amp = config.amp and context.device.type == "cuda"
    scaler = torch.amp.GradScaler(context.device.type, enabled=use_amp)
    mix = ClassificationMixup(config.mixup_alpha) if config.mixup else no_mixup
    val_loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(val_set, range(context.rank, len(val_set), context.world_size)),
        batch_size=per_rank,
        num_workers=config.workers,
        generator=torch.Generator(),  # validating draws nothing from the global generator (the crops')
        pin_memory=context.device.type == "cuda",
    )
    state = {"epoch": 0, "iteration": 0, "top1": [], "train_seconds": 0.0, "images_seen": 0}
    checkpoints = RunCheckpoints(out, context)
    checkpoint_path = checkpoints.latest
    if restart:  # set aside unread: a damaged checkpoint cannot block a restart
        checkpoints.start_over("--restart")
    saved = checkpoints.load()
    if saved is not None and saved.get("config") != to_dict(config):
        checkpoints.start_over("it holds a run of another config")
        saved = None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if saved["scaler"]:  # empty when written without AMP (on a CPU): a GPU resume starts a fresh scale
            scaler.load_state_dict(saved["scaler"])
        restore_rng(saved, context)  # the crops of `workers: 0` draw from it
        state = saved["state"]
    log_path = out / "train_log.jsonl"  # one record an epoch: what `bof status` reads (no torch)
    if context.is_main:
        keep_log_until(log_path, state["iteration"])
    wall_started = time.time()
    for epoch in range(state["epoch"], config.epochs):
        sampler = (
            torch.utils.data.DistributedSampler(train_set, shuffle=True, seed=config.seed, drop_last=True)
            if context.distributed
            else torch.utils.data.RandomSampler(
                train_set, generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch)
            )
        )
        if context.distributed:
            sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            train_set,
            batch_size=per_rank,
            sampler=sampler,
            num_workers=config.workers,
            drop_last=True,
            generator=torch.Generator().manual_seed(config.seed * 7919 + epoch),
            pin_memory=context.device.type == "cuda",
        )
        network.train()
        started = time.perf_counter()
        losses, first = [], state["iteration"]  # read back every CHECK_EVERY steps, not every step (a sync)
        for images, labels in tqdm(
            loader,
            desc=f"pretrain {epoch + 1}/{config.epochs}",
            disable=not (progress and context.is_main),
            leave=False,
        ):
            images, labels = to_device(images, context.device), labels.to(context.device, non_blocking=True)
            targets = F.one_hot(labels, num_classes).float()
            images, targets = mix(images, targets, generator_for(config.seed, epoch, state["iteration"], context.rank))
            with torch.autocast(context.device.type, dtype=torch.float16, enabled=use_amp):
                loss = F.cross_entropy(network(images), targets, label_smoothing=config.label_smoothing)
            losses.append(loss.detach().float())
            if not scaler.is_enabled():  # no GradScaler to skip a non-finite step: check it now
                check_finite(losses[-1:], state["iteration"], epoch, checkpoint_path)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            state["iteration"] += 1
            state["images_seen"] += len(images) * context.world_size
            if len(losses) == CHECK_EVERY:
                check_finite(losses, first, epoch, checkpoint_path)
                losses, first = [], state["iteration"]
        check_finite(losses, first, epoch, checkpoint_path)  # before the epoch's checkpoint
        state["train_seconds"] += time.perf_counter() - started
        state["top1"].append({"epoch": epoch + 1, "top1": accuracy(model, val_loader, context)})
        state["epoch"] = epoch + 1
        rng = rng_states(context)  # every rank's, gathered by all of them
        if context.is_main:
            with open(log_path, "a") as stream:  # before the checkpoint: a resume drops records past it
                stream.write(json.dumps({"iteration": state["iteration"], **state["top1"][-1]}) + "\n")
            checkpoints.save(
                {
                    "config": to_dict(config),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": rng,
                    "state": state,
                }
            )
        distributed.barrier(context)
    top1 = state["top1"][-1]["top1"]
    if context.is_main:
        save_checkpoint(
            {
                "format": BACKBONE_FORMAT,
                "backbone": config.backbone,
                "width": config.width,
                "depth": config.depth,
                "weights": backbone_weights(model),
                "classes": train_set.classes,
                "mixup": config.mixup,
                "top1": top1,
                "config": to_dict(config),
            },
            out / "backbone.pt",
        )
        atomic_write_json(out / "metrics.json", {"top1": top1, "curve": state["top1"], "mixup": config.mixup})
        atomic_write_json(
            out / "run.json",
            {
                "config": to_dict(config),
                "seed": config.seed,
                "train_images": len(train_set),
                "val_images": len(val_set),
                "world_size": context.world_size,
                "process_group": torch.distributed.get_backend() if context.distributed else None,
                "ddp": isinstance(network, DistributedDataParallel),
                "wall_seconds": time.time() - wall_started,
                "images_per_second": state["images_seen"] / state["train_seconds"] if state["train_seconds"] else None,
                "top1": top1,
                **environment(context.device),
            },
        )
    return {"top1": top1, "curve": state["top1"]}
