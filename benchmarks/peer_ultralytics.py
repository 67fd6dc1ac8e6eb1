"""A peer on the same data: do ultralytics' own freebies help or hurt at this scale? (issue 27)

The mini dataset (VOC layout) is converted to ultralytics' YOLO format, and YOLOv8n is trained
from scratch on it with the peer's defaults, each freebie switched on alone against that
baseline, three seeds each, the same epochs on and off:

  baseline   ultralytics' default recipe (mosaic, HSV, flips, translate/scale; linear lr decay)
  cos_lr     + its cosine schedule (``cos_lr=True``; ``BaseTrainer._setup_scheduler``)
  mixup      + its mixup on every image (``mixup=1.0``; ``MixUp``, ratios from Beta(32, 32),
             boxes of both images kept unweighted; off with mosaic in the last 10 epochs, its
             default ``close_mosaic``, where ours is off in the last tenth)

Label smoothing has no switch left in ultralytics (8.3.0 keeps the ``label_smoothing`` key and
uses it nowhere; later versions removed it), so it is not run. Each run's final model (``last.pt``,
not the best epoch; no validation during training) is validated on the test split by ultralytics'
own validator: mAP@0.5 (its 101-point interpolation, not VOC07's 11-point; objects marked
difficult count, where VOC07 ignores them) and mAP@[.5:.95]. The deltas are paired by seed with
95 % Student-t intervals, as bof's report does. Each run has its own copy of the converted labels
(ultralytics writes a label cache beside them: runs side by side must not share it).

Runs in its own environment (ultralytics pins opencv-python, bof uses the headless build):

    make peer            # .venv-peer with the project's torch pins and ultralytics==8.3.0, then this
    .venv-peer/bin/python benchmarks/peer_ultralytics.py --voc data/mini/VOCdevkit/VOC2007 \\
        --out results/peer --epochs 48 --imgsz 96 --seeds 0 1 2 --jobs 2

Resumable: a run whose JSON exists is not trained again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import scipy.stats

VARIANTS = {"baseline": {}, "cos_lr": {"cos_lr": True}, "mixup": {"mixup": 1.0}}


def split_ids(voc: Path, split: str) -> list[str]:
    path = voc / "ImageSets" / "Main" / f"{split}.txt"
    if not path.exists():
        raise SystemExit(f"{path}: no such split file (is --voc a VOC2007-style folder?)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def yolo_labels(annotation: Path, classes: list[str]) -> list[str]:
    """One ``class cx cy w h`` line (normalised) per object of a VOC annotation, difficult ones included."""
    root = ET.parse(annotation).getroot()
    width, height = float(root.findtext("size/width")), float(root.findtext("size/height"))
    lines = []
    for obj in root.iter("object"):
        name = obj.findtext("name")
        if name not in classes:
            raise SystemExit(f"{annotation}: class '{name}' is not in the dataset's classes {classes}")
        box = obj.find("bndbox")
        x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        x1, y1 = x1 - 1, y1 - 1  # VOC's 1-based pixel corners
        lines.append(
            f"{classes.index(name)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
            f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
        )
    return lines


def convert(voc: Path, work: Path) -> Path:
    """``work/data.yaml`` for ultralytics: images linked from the VOC folder, YOLO labels beside them."""
    classes_file = voc.parent / "classes.txt"
    names = (
        [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
        if classes_file.exists()
        else sorted(
            {
                obj.findtext("name")
                for xml in (voc / "Annotations").glob("*.xml")
                for obj in ET.parse(xml).getroot().iter("object")
            }
        )
    )
    for split, folder in (("trainval", "train"), ("test", "test")):
        (work / "images" / folder).mkdir(parents=True, exist_ok=True)
        (work / "labels" / folder).mkdir(parents=True, exist_ok=True)
        for image_id in split_ids(voc, split):
            image = (voc / "JPEGImages" / f"{image_id}.jpg").resolve()
            link = work / "images" / folder / image.name
            if not link.exists():
                link.symlink_to(image)
            labels = yolo_labels(voc / "Annotations" / f"{image_id}.xml", names)
            (work / "labels" / folder / f"{image_id}.txt").write_text("\n".join(labels) + ("\n" if labels else ""))
    data = work / "data.yaml"
    data.write_text(
        f"path: {work.resolve()}\ntrain: images/train\nval: images/test\n"
        + "names:\n"
        + "".join(f"  {k}: {name}\n" for k, name in enumerate(names))
    )
    return data


def train_one(data: str, out: str, variant: str, seed: int, epochs: int, imgsz: int, batch: int) -> dict:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    import ultralytics
    import ultralytics.utils.torch_utils
    from ultralytics import YOLO

    torch.set_num_threads(1)
    ultralytics.utils.torch_utils.NUM_THREADS = 1  # select_device would set min(8, cores - 1) threads
    name = f"{variant}_s{seed}"
    started = time.time()
    model = YOLO("yolov8n.yaml")  # from scratch: no download, no pretrained weights
    model.train(
        data=data, epochs=epochs, imgsz=imgsz, batch=batch, workers=0, seed=seed, deterministic=True,
        device="cpu", pretrained=False, amp=False, plots=False, verbose=False, val=False, project=out,
        name=name, exist_ok=True, **VARIANTS[variant],
    )  # fmt: skip
    wall = time.time() - started
    last = YOLO(str(Path(out) / name / "weights" / "last.pt"))
    metrics = last.val(data=data, imgsz=imgsz, batch=16, device="cpu", plots=False, verbose=False, split="val")
    return {
        "variant": variant,
        "seed": seed,
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        "settings": VARIANTS[variant],
        "map50": 100 * float(metrics.box.map50),
        "map50_95": 100 * float(metrics.box.map),
        "train_wall_seconds": wall,
        "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__},
        "machine": f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }


def interval(deltas: list[float]) -> tuple[float, float] | None:
    """The paired deltas' 95 % Student-t interval (scipy comes with ultralytics); None below two
    seeds or without spread."""
    if len(deltas) < 2:
        return None
    bounds = scipy.stats.ttest_1samp(deltas, 0.0).confidence_interval(0.95)
    return None if math.isnan(bounds.low) else (float(bounds.low), float(bounds.high))


def summary(runs: list[dict], seeds: list[int]) -> str:
    """Markdown: each variant's mean and its paired delta over the baseline, with a 95 % interval."""
    by = {(r["variant"], r["seed"]): r for r in runs}
    lines = [
        "| variant | seeds | mAP@0.5 | Δ mAP@0.5 [95 % CI] | mAP@[.5:.95] | Δ mAP@[.5:.95] [95 % CI] |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        cells = [variant, str(sum((variant, s) in by for s in seeds))]
        for key in ("map50", "map50_95"):
            values = [by[(variant, s)][key] for s in seeds if (variant, s) in by]
            cells.append(f"{statistics.mean(values):.2f}" if values else "—")
            deltas = [
                by[(variant, s)][key] - by[("baseline", s)][key]
                for s in seeds
                if (variant, s) in by and ("baseline", s) in by
            ]
            if variant == "baseline" or not deltas:
                cells.append("—")
            else:
                bounds = interval(deltas)
                cells.append(
                    f"{statistics.mean(deltas):+.2f}" + (f" [{bounds[0]:+.2f}, {bounds[1]:+.2f}]" if bounds else "")
                )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voc", type=Path, default=Path("data/mini/VOCdevkit/VOC2007"))
    parser.add_argument("--out", type=Path, default=Path("results/peer"))
    parser.add_argument("--epochs", type=int, default=48)
    parser.add_argument("--imgsz", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side, one thread each")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs_folder = args.out / "runs"
    runs_folder.mkdir(exist_ok=True)
    suffix = f"{args.epochs}e_{args.imgsz}px_b{args.batch}"
    todo = [
        (variant, seed)
        for variant in args.variants
        for seed in args.seeds
        if not (runs_folder / f"{variant}_s{seed}_{suffix}.json").exists()
    ]
    print(f"{len(todo)} runs to train ({args.epochs} epochs at {args.imgsz} px), {args.jobs} at a time", flush=True)
    failed = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {}
        for variant, seed in todo:
            data = convert(args.voc, args.out / "data" / f"{variant}_s{seed}")
            work = str(args.out / "train" / suffix)
            future = pool.submit(train_one, str(data), work, variant, seed, args.epochs, args.imgsz, args.batch)
            futures[future] = (variant, seed)
        for future in as_completed(futures):
            variant, seed = futures[future]
            try:
                result = future.result()
            except Exception as error:  # one run's failure must not lose the others' results
                failed.append(f"{variant} seed {seed}: {error!r}")
                print(f"{variant} seed {seed} FAILED: {error!r}", flush=True)
                continue
            path = runs_folder / f"{variant}_s{seed}_{suffix}.json"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(result, indent=2))
            temporary.replace(path)
            print(
                f"{variant} seed {seed}: mAP@0.5 {result['map50']:.2f}, {result['train_wall_seconds']:.0f} s",
                flush=True,
            )
    runs = [json.loads(p.read_text()) for p in sorted(runs_folder.glob(f"*_{suffix}.json"))]
    table = summary(runs, args.seeds)
    (args.out / f"summary_{suffix}.md").write_text(table + "\n")
    print(table)
    if failed:
        raise SystemExit("failed runs (rerun to retry them):\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main()
