"""Writing the synthetic dataset: scenes in parallel, VOC XML, splits, COCO JSON, ImageFolder."""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import shutil
from collections import Counter
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import PIL
from PIL import Image
from tqdm import tqdm

from bof import __version__
from bof.data.coco import detection_to_coco
from bof.data.synth.config import SynthConfig
from bof.data.synth.render import render_scene, render_single_object
from bof.data.synth.shapes import SHAPE_INDEX
from bof.data.voc import CLASSES_FILE, VOCDetection, format_voc_xml
from bof.errors import BofError
from bof.io import atomic_write_json

SPLITS = ("train", "val", "trainval", "test")
YEAR = "2007"


def image_id(index: int) -> str:
    return f"{index + 1:06d}"


def split_ids(config: SynthConfig) -> dict[str, list[str]]:
    """VOC-style splits: ``test`` vs ``trainval``, and ``trainval`` = ``train`` + ``val``."""
    order = np.random.default_rng([config.seed, 2]).permutation(config.num_images)
    num_test = min(max(1, round(config.num_images * config.test_fraction)), config.num_images - 2)
    test, trainval = order[:num_test], order[num_test:]
    num_val = min(max(1, round(len(trainval) * config.val_fraction)), len(trainval) - 1)
    val, train = trainval[:num_val], trainval[num_val:]
    return {
        name: [image_id(i) for i in sorted(part)]
        for name, part in zip(SPLITS, (train, val, trainval, test), strict=True)
    }


def _write_scene(index: int, *, config: SynthConfig, year_root: Path, names: list[str]) -> list[tuple[int, bool, bool]]:
    pixels, objects = render_scene(np.random.default_rng([config.seed, 0, index]), config.scene)
    stem = image_id(index)
    Image.fromarray(pixels).save(year_root / "JPEGImages" / f"{stem}.jpg", quality=config.jpeg_quality)
    xml = format_voc_xml(
        folder=f"VOC{YEAR}",
        filename=f"{stem}.jpg",
        width=pixels.shape[1],
        height=pixels.shape[0],
        objects=[(names[o.label], o.truncated, o.difficult, o.box) for o in objects],
    )
    (year_root / "Annotations" / f"{stem}.xml").write_text(xml)
    return [(o.label, o.truncated, o.difficult) for o in objects]


def _write_classification_image(
    job: tuple[str, int, int], *, config: SynthConfig, root: Path, names: list[str]
) -> None:
    split, label, number = job
    rng = np.random.default_rng([config.seed, 1, label, number])
    pixels = render_single_object(rng, SHAPE_INDEX[names[label]], config.cls_image_size)
    Image.fromarray(pixels).save(root / split / names[label] / f"{number:06d}.jpg", quality=config.jpeg_quality)


def _run(pool, function, jobs, description: str, progress: bool) -> list:
    results = pool.imap(function, jobs, chunksize=8) if pool else map(function, jobs)
    return list(tqdm(results, total=len(jobs), desc=description, unit="img", disable=not progress, leave=False))


def _write_dataset(config: SynthConfig, root: Path, *, workers: int, progress: bool) -> dict:
    names = config.names
    devkit = root / "VOCdevkit"
    year_root = devkit / f"VOC{YEAR}"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (year_root / folder).mkdir(parents=True, exist_ok=True)
    classification = root / "classification"
    cls_jobs = []
    num_cls_val = max(1, round(config.cls_images_per_class * config.cls_val_fraction))
    for label, name in enumerate(names):
        for split in ("train", "val"):
            (classification / split / name).mkdir(parents=True, exist_ok=True)
        for number in range(config.cls_images_per_class):
            cls_jobs.append(("val" if number < num_cls_val else "train", label, number))

    context = multiprocessing.get_context("spawn") if workers > 1 else None
    pool = context.Pool(workers) if context else None
    try:
        scene_objects = _run(
            pool,
            partial(_write_scene, config=config, year_root=year_root, names=names),
            list(range(config.num_images)),
            "synth scenes",
            progress,
        )
        _run(
            pool,
            partial(_write_classification_image, config=config, root=classification, names=names),
            cls_jobs,
            "synth classification",
            progress,
        )
    finally:
        if pool:
            pool.close()
            pool.join()

    (devkit / CLASSES_FILE).write_text("".join(f"{name}\n" for name in names))
    splits = split_ids(config)
    for split, ids in splits.items():
        (year_root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        dataset = VOCDetection(devkit, [(YEAR, split)], check_images="none")
        coco = detection_to_coco(dataset, image_root=devkit)
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco) + "\n")
    return _manifest(config, names, splits, scene_objects)


def _manifest(config: SynthConfig, names: list[str], splits: dict[str, list[str]], scene_objects: list) -> dict:
    objects = [o for per_image in scene_objects for o in per_image]
    per_class = Counter(label for label, _, _ in objects)
    return {
        "dataset": "bof synthetic (Pascal VOC layout)",
        "config": asdict(config),
        "classes": names,
        "images_per_split": {split: len(ids) for split, ids in splits.items()},
        "objects": len(objects),
        "objects_per_class": {names[label]: per_class[label] for label in range(len(names))},
        "truncated": sum(truncated for _, truncated, _ in objects),
        "difficult": sum(difficult for _, _, difficult in objects),
        "versions": {
            "bof": __version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
            "python": platform.python_version(),
        },
    }


def generate(
    config: SynthConfig, out: str | Path, *, workers: int = 1, force: bool = False, progress: bool = True
) -> dict:
    """Write the dataset to ``out`` and return its manifest (also saved as ``synth.json``).

    The dataset is built in a temporary sibling folder and moved into place only when
    complete, so an interrupted run never leaves a half-written dataset behind, and an
    existing ``out`` is replaced only with ``force``.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise BofError(f"{out}: already exists and is not empty; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        manifest = _write_dataset(config, staging, workers=workers, progress=progress)
        atomic_write_json(staging / "synth.json", manifest)
        if out.exists():
            retired = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(retired)
            staging.rename(out)
            shutil.rmtree(retired)
        else:
            staging.rename(out)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise BofError(f"{out}: could not write the synthetic dataset ({error})") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
