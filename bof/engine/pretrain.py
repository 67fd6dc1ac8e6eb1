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
(resumed automatically), ``train_log.jsonl`` (a record an epoch), ``metrics.json`` (top-1 per
epoch) and ``run.json``.

Augmentation here is torchvision's ImageFolder pipeline, which draws from each worker's
torch generator; those are seeded from the run's seed and the epoch, so a run repeats
exactly for a given number of workers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torchvision import datasets
from torchvision.transforms import v2
from tqdm import tqdm

from bof.config import PretrainConfig, to_dict
from bof.engine import distributed, loop
from bof.engine.checkpoint import RunCheckpoints, rng_states, save_checkpoint
from bof.engine.lock import hold_run_folder
from bof.engine.provenance import environment
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
            return Pretrainer(config, Path(out), context, progress=progress).fit(restart=restart)
    finally:
        distributed.teardown()


class Pretrainer:
    """Holds what one pretraining needs; ``fit()`` runs the remaining epochs (the detector's
    `Trainer` has the same shape, and both share bof.engine.loop)."""

    def __init__(self, config: PretrainConfig, out: Path, context: distributed.Context, *, progress: bool = True):
        self.config, self.out, self.context, self.show_progress = config, out, context, progress
        torch.manual_seed(config.seed)
        self.train_set, self.val_set = image_folders(config)
        self.num_classes = len(self.train_set.classes)
        model = classifier(config.backbone, self.num_classes, width=config.width, depth=config.depth)
        self.model = model.to(context.device)
        if context.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.network = DistributedDataParallel(self.model) if context.distributed else self.model
        self.per_rank = config.batch_size // context.world_size
        iters_per_epoch = len(self.train_set) // config.batch_size
        if iters_per_epoch < 1 or self.per_rank < 1:
            raise ConfigError(
                f"pretrain.batch_size {config.batch_size} does not fit {len(self.train_set)} images on {context.world_size} processes"
            )
        groups = parameter_groups(self.model, config.weight_decay, decay_norm_and_bias=config.decay_norm_and_bias)
        self.optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
        self.scheduler = build_scheduler(
            self.optimizer,
            iters_per_epoch=iters_per_epoch,
            epochs=config.epochs,
            warmup_epochs=config.warmup_epochs,
            mode="cosine",
        )
        self.use_amp = config.amp and context.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(context.device.type, enabled=self.use_amp)
        self.mix = ClassificationMixup(config.mixup_alpha) if config.mixup else no_mixup
        self.val_loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(self.val_set, range(context.rank, len(self.val_set), context.world_size)),
            batch_size=self.per_rank,
            num_workers=config.workers,
            generator=torch.Generator(),  # validating draws nothing from the global generator (the crops')
            pin_memory=context.device.type == "cuda",
        )
        self.state = {"epoch": 0, "iteration": 0, "top1": [], "train_seconds": 0.0, "images_seen": 0}
        self.checkpoints = RunCheckpoints(out, context)
        self.log_path = out / "train_log.jsonl"  # one record an epoch: what `bof status` reads (no torch)

    def resume(self, *, restart: bool) -> None:
        """Continue from the folder's newest intact checkpoint, unless ``restart`` (set aside unread:
        a damaged checkpoint cannot block it) or it holds another config (set aside)."""
        if restart:
            self.checkpoints.start_over("--restart", with_them=(self.log_path,))
        saved = self.checkpoints.load()
        if saved is not None:
            saved = loop.current_format(saved, "pretrain", self.checkpoints.loaded_from)
            if saved["config"] != to_dict(self.config):
                self.checkpoints.start_over("it holds a run of another config", with_them=(self.log_path,))
                saved = None
        if saved is not None:  # the random state too: the crops of `workers: 0` draw from it
            loop.restore(saved, self)
            self.state = saved["progress"]
        if self.context.is_main:
            loop.keep_log_until(self.log_path, self.state["iteration"])

    def train_epoch(self, epoch: int) -> None:
        config, context, state = self.config, self.context, self.state
        loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_size=self.per_rank,
            sampler=loop.epoch_sampler(self.train_set, context, config.seed, epoch),
            num_workers=config.workers,
            drop_last=True,
            generator=torch.Generator().manual_seed(config.seed * 7919 + epoch),
            pin_memory=context.device.type == "cuda",
        )
        self.network.train()
        started = time.perf_counter()
        losses = loop.LossReader(self, epoch, state["epoch"])
        bar = tqdm(
            loader,
            desc=f"pretrain {epoch + 1}/{config.epochs}",
            disable=not (self.show_progress and context.is_main),
            leave=False,
        )
        for images, labels in bar:
            images, labels = to_device(images, context.device), labels.to(context.device, non_blocking=True)
            targets = F.one_hot(labels, self.num_classes).float()
            generator = generator_for(config.seed, epoch, state["iteration"], context.rank)
            images, targets = self.mix(images, targets, generator)
            with torch.autocast(context.device.type, dtype=torch.float16, enabled=self.use_amp):
                loss = F.cross_entropy(self.network(images), targets, label_smoothing=config.label_smoothing)
            losses.add(state["iteration"], {"loss": loss})
            loop.optimizer_step(loss, self.optimizer, self.scheduler, self.scaler)
            state["iteration"] += 1
            state["images_seen"] += len(images) * context.world_size
            if len(losses) == CHECK_EVERY:
                losses.read()
        losses.read()  # before the epoch's checkpoint
        state["train_seconds"] += time.perf_counter() - started

    def save(self) -> None:
        rng = rng_states(self.context)  # every rank's, gathered by all of them
        if self.context.is_main:
            with open(self.log_path, "a") as stream:  # before the checkpoint: a resume drops records past it
                stream.write(json.dumps({"iteration": self.state["iteration"], **self.state["top1"][-1]}) + "\n")
            self.checkpoints.save(loop.checkpoint("pretrain", self, rng, self.state))

    def fit(self, *, restart: bool = False) -> dict:
        self.resume(restart=restart)
        wall_started = time.time()
        for epoch in range(self.state["epoch"], self.config.epochs):
            self.train_epoch(epoch)
            self.state["top1"].append({"epoch": epoch + 1, "top1": accuracy(self.model, self.val_loader, self.context)})
            self.state["epoch"] = epoch + 1
            self.save()
            distributed.barrier(self.context)
        if self.context.is_main:
            self.finish(time.time() - wall_started)
        return {"top1": self.state["top1"][-1]["top1"], "curve": self.state["top1"]}

    def finish(self, wall_seconds: float) -> None:
        config, state, out = self.config, self.state, self.out
        top1 = state["top1"][-1]["top1"]
        save_checkpoint(
            {
                "format": BACKBONE_FORMAT,
                "backbone": config.backbone,
                "width": config.width,
                "depth": config.depth,
                "weights": backbone_weights(self.model),
                "classes": self.train_set.classes,
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
                **loop.run_record(self, wall_seconds, state),
                "train_images": len(self.train_set),
                "val_images": len(self.val_set),
                "top1": top1,
                **environment(self.context.device),
            },
        )
