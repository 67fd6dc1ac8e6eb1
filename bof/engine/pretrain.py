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
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets
from torchvision.transforms import v2

from bof.config import PretrainConfig, to_dict
from bof.engine import distributed, loop
from bof.engine.checkpoint import save_checkpoint
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
        return Pretrainer(config, Path(out), context, progress=progress).fit(restart=restart)
    finally:
        distributed.teardown()


class Pretrainer(loop.TrainingLoop):
    """One backbone's classification pretraining, in the loop detector training runs too."""

    kind = "pretrain"
    log_every = CHECK_EVERY

    def __init__(self, config: PretrainConfig, out: Path, context: distributed.Context, *, progress: bool = True):
        super().__init__(config, out, context, progress=progress)
        self.epochs = config.epochs
        self.train_set, self.val_set = image_folders(config)
        self.num_classes = len(self.train_set.classes)
        self.per_rank = config.batch_size // context.world_size
        self.iters_per_epoch = len(self.train_set) // config.batch_size
        if self.iters_per_epoch < 1 or self.per_rank < 1:
            raise ConfigError(
                f"pretrain.batch_size {config.batch_size} does not fit {len(self.train_set)} images on {context.world_size} processes"
            )
        self.place(classifier(config.backbone, self.num_classes, width=config.width, depth=config.depth))
        groups = parameter_groups(self.model, config.weight_decay, decay_norm_and_bias=config.decay_norm_and_bias)
        sgd = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
        cosine = build_scheduler(
            sgd,
            iters_per_epoch=self.iters_per_epoch,
            epochs=config.epochs,
            warmup_epochs=config.warmup_epochs,
            mode="cosine",
        )
        self.optimize_with(sgd, cosine, amp=config.amp)
        self.mix = ClassificationMixup(config.mixup_alpha) if config.mixup else no_mixup
        self.val_loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(self.val_set, range(context.rank, len(self.val_set), context.world_size)),
            batch_size=self.per_rank,
            num_workers=config.workers,
            generator=torch.Generator(),  # validating draws nothing from the global generator (the crops')
            pin_memory=context.device.type == "cuda",
        )

    def loader(self, epoch: int) -> torch.utils.data.DataLoader:
        config = self.config
        return torch.utils.data.DataLoader(
            self.train_set,
            batch_size=self.per_rank,
            sampler=loop.epoch_sampler(self.train_set, self.context, config.seed, epoch),
            num_workers=config.workers,
            drop_last=True,
            generator=loop.epoch_generator(config.seed, epoch, loop.PRETRAIN_WORKERS),
            pin_memory=self.context.device.type == "cuda",
        )

    def losses(self, batch, epoch: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
        device = self.context.device
        images, labels = to_device(batch[0], device), batch[1].to(device, non_blocking=True)
        targets = F.one_hot(labels, self.num_classes).float()
        generator = generator_for(self.config.seed, epoch, self.state.iteration, self.context.rank)
        images, targets = self.mix(images, targets, generator)
        with torch.autocast(device.type, dtype=torch.float16, enabled=self.use_amp):
            loss = F.cross_entropy(self.network(images), targets, label_smoothing=self.config.label_smoothing)
        return {"loss": loss}, loss, len(images)

    def validate(self, epoch: int) -> dict:
        """Top-1 on the val folder; a record in the log (one an epoch: what `bof status` reads,
        without torch), written before the checkpoint: a resume drops records past it."""
        self.state.curve.append({"epoch": epoch + 1, "top1": accuracy(self.model, self.val_loader, self.context)})
        if self.context.is_main:
            with open(self.log_path, "a") as stream:
                stream.write(json.dumps({"iteration": self.state.iteration, **self.state.curve[-1]}) + "\n")
        return self.final_report()

    def final_report(self) -> dict:
        return {"top1": self.state.curve[-1]["top1"], "curve": self.state.curve}

    def finish(self, report: dict, wall_seconds: float) -> None:
        config, out, top1 = self.config, self.out, report["top1"]
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
        atomic_write_json(out / "metrics.json", {"top1": top1, "curve": self.state.curve, "mixup": config.mixup})
        atomic_write_json(
            out / "run.json",
            {
                **loop.run_record(self, wall_seconds),
                "train_images": len(self.train_set),
                "val_images": len(self.val_set),
                "top1": top1,
                **environment(self.context.device),
            },
        )
