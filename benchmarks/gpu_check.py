"""The paper presets' trainings, run briefly on this machine's GPU: can they be trusted, and what
would a whole preset cost on an 8-GPU node?

For each detector of the presets (``config/voc.yaml``, ``config/coco.yaml``), the heaviest trick
combination of its tables (all the freebies: SyncBN, random shapes 320-608, cosine, label
smoothing, mixup) is trained at the preset's full size (Darknet-53 YOLOv3 at 416; Faster R-CNN
R50/R101 at 600/1000, COCO 800/1333) with the preset's per-GPU batch and data-loader workers, AMP
and channels_last, launched exactly as the pipeline launches it (``torch.distributed.run
--standalone --nproc_per_node 1 -m bof train``: NCCL, the SyncBN conversion, DDP), on synthetic
VOC-sized images (no internet needed), for a few epochs. Under torchrun one process takes the
8-GPU path (bof/engine/distributed.py): each run's ``run.json`` says which (``process_group``,
``ddp``, ``batchnorm_layers``), and a run that did not take it fails the check. Each run's ``run.json`` gives its
images/s, peak GPU memory and the share of the training time spent waiting for data; its log
gives the loss, which must fall. From the images/s the script projects the training time of each
preset on one node of 8 such GPUs (every training job of the preset, all seeds, the preset's
epochs over VOC07+12's 16,551 or COCO train2017's 117,266 images; linear scaling over GPUs, jobs
packed onto the 8 GPUs; pretraining on ImageNet and evaluation not included).

    python benchmarks/gpu_check.py --out gpu_check.json          # on a GPU, about 5 minutes
    python benchmarks/gpu_check.py --tiny --out gpu_check.json   # on a CPU: tiny networks (the tests)

Prints one line per run and the projection, writes everything to ``--out`` (JSON, with the
device's name), and exits 1 if a loss did not fall or a run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bof.config import to_dict
from bof.data.synth import SynthConfig, generate
from bof.pipeline import matrix

ROOT = Path(__file__).resolve().parent.parent
TRAIN_IMAGES = {"voc": 16551, "coco": 117266}  # VOC07+12 trainval; COCO train2017 images with objects
TINY_MODELS = {  # CPU-sized stand-ins for the tests: the same code path, networks a CPU trains in seconds
    "yolov3": {"backbone": "darknet53", "width": 0.125, "depth": 0.34, "input_size": 64},
    "faster_rcnn": {"backbone": "small_resnet", "width": 0.125, "min_size": 64, "max_size": 96},
}
TINY_MODELS_BY_BACKBONE = {  # their backbones' pretraining
    "darknet53": {"backbone": "darknet53", "width": 0.125, "depth": 0.34},
    "resnet50": {"backbone": "small_resnet", "width": 0.125},
    "resnet101": {"backbone": "small_resnet", "width": 0.125},
}


def heaviest_job(preset: matrix.Preset, detector: str) -> matrix.Job:
    """The detector's combination with the most tricks in the preset's tables (seed 0)."""
    combos = sorted({job.combo for job in matrix.jobs(preset) if job.detector == detector})
    return matrix.Job(detector, max(combos, key=lambda combo: (len(combo.split("_")), combo)), 0)


def per_gpu(batch_size: int, lr: float, processes: int) -> tuple[int, float]:
    """One GPU's share of the preset's batch and the learning rate for it alone (the linear scaling
    rule): the check trains one process, whose gradient is not averaged with seven others."""
    batch = max(1, batch_size // max(1, processes))
    return batch, lr * batch / batch_size


def backbone_config(preset: matrix.Preset, backbone: str, data_root: Path, *, steps: int, tiny: bool) -> dict:
    """The preset's pretraining recipe of ``backbone``, one GPU's share, for about ``steps`` steps
    on the synthetic classification images: long enough (BN's momentum 0.1: 1 - 0.9**30 = 96 %)
    for its batch-norm statistics to be the data's. A detector built on identity statistics
    (``pretrained: none``) lets R101's activations grow past float16's range under AMP."""
    config = to_dict(matrix.pretrain_config(preset, backbone, "plain"))
    resources = matrix.pretraining_resources(preset, backbone)
    batch, lr = per_gpu(config["batch_size"], config["lr"], resources.processes)
    if tiny:
        config.update(image_size=32, workers=min(config["workers"], 1))
        config.update({key: value for key, value in TINY_MODELS_BY_BACKBONE.get(backbone, {}).items()})
        batch = min(batch, 8)
    images = sum(1 for _ in (data_root / "train").rglob("*.jpg"))
    per_epoch = max(1, images // batch)
    config.update(
        data=str(data_root), batch_size=batch, lr=lr, warmup_epochs=0.0, epochs=-(-steps // per_epoch), device="auto"
    )
    return config


def check_config(
    preset: matrix.Preset, job: matrix.Job, data_root: Path, *, epochs: int, tiny: bool, backbone: Path | None
) -> dict:
    """The job's config as the pipeline builds it, on the synthetic data, for ``epochs`` short epochs,
    from the briefly pretrained ``backbone`` (ImageNet weights need the internet), at one GPU's
    share of the batch and learning rate, with a warmup of half the first epoch."""
    config = to_dict(matrix.train_config(preset, job))
    resources = matrix.training_resources(preset, job.detector)
    batch, lr = per_gpu(config["optim"]["batch_size"], config["optim"]["lr"], resources.processes)
    config["data"] = {"format": "voc", "root": str(data_root), "train": ["2007:trainval"], "val": ["2007:test"]}
    config["model"]["pretrained"] = str(backbone) if backbone is not None else None
    if config["model"]["arch"] == "yolov3" and isinstance(config["model"]["anchors"], str):
        config["model"]["anchors"] = None  # a k-means file of the real data: the paper's nine instead
    config["optim"].update(epochs=epochs, batch_size=batch, lr=lr, step_epochs=[], warmup_epochs=0.5)
    config["tricks"]["mixup"]["off_last_epochs"] = 0  # mixing in every epoch: its data cost is measured
    config["run"].update(val_every=0, log_every=5, amp=True, device="auto")
    if tiny:
        config["model"].update(TINY_MODELS[config["model"]["arch"]])
        config["optim"]["batch_size"] = 4
        config["run"]["workers"] = min(config["run"]["workers"], 1)
        shapes = config["tricks"]["random_shapes"]
        if shapes["enabled"]:
            shapes.update(min=64, max=96, interval=2)
    return config


def torchrun(command: str, config: dict, out: Path, *, timeout: float) -> subprocess.CompletedProcess:
    """``bof <command>`` under torch.distributed.run with one process, as the pipeline starts it."""
    out.mkdir(parents=True, exist_ok=True)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    launch += ["-m", "bof", command, "--config-json", json.dumps(config), "--out", str(out), "--quiet"]
    return subprocess.run(launch, capture_output=True, text=True, timeout=timeout)


def run_pretraining(config: dict, out: Path, *, timeout: float) -> dict:
    started = time.perf_counter()
    result = torchrun("pretrain", config, out, timeout=timeout)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        return {"ok": False, "wall_seconds": wall, "error": (result.stdout + result.stderr)[-3000:]}
    run = json.loads((out / "run.json").read_text())
    return {
        "ok": True,
        "wall_seconds": wall,
        "images_per_second": run["images_per_second"],
        "batch_per_gpu": config["batch_size"],
        "epochs": config["epochs"],
        "process_group": run["process_group"],
        "ddp": run["ddp"],
        "backbone": str(out / "backbone.pt"),
    }


def run_training(config: dict, out: Path, *, timeout: float) -> dict:
    """``bof train`` under torch.distributed.run with one process, as the pipeline starts it."""
    started = time.perf_counter()
    result = torchrun("train", config, out, timeout=timeout)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        return {"ok": False, "wall_seconds": wall, "error": (result.stdout + result.stderr)[-3000:]}
    run = json.loads((out / "run.json").read_text())
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [sum(value for key, value in record.items() if key.startswith("loss")) for record in log]
    head, tail = losses[: max(1, len(losses) // 4)], losses[-max(1, len(losses) // 4) :]
    first, last = sum(head) / len(head), sum(tail) / len(tail)
    return {
        "ok": True,
        "wall_seconds": wall,
        "images_per_second": run["images_per_second"],
        "data_wait_share": run["data_wait_share"],
        "peak_memory_gib": run["peak_memory_bytes"] / 2**30 if run["peak_memory_bytes"] is not None else None,
        "amp": run["amp"],
        "world_size": run["world_size"],
        "process_group": run["process_group"],
        "ddp": run["ddp"],
        "batchnorm_layers": run["batchnorm_layers"],
        "distributed_path": distributed_path(config, run),
        "iterations": run["iterations"],
        "loss_first_quarter": first,
        "loss_last_quarter": last,
        "loss_fell": last < first,
    }


def distributed_path(config: dict, run: dict) -> bool:
    """Whether the run took the 8-GPU path: a process group (NCCL on a GPU), DDP, and synchronized
    BN layers where the combination asks for them."""
    cuda = torch.cuda.is_available()  # the trainings run on this machine
    sync = config["tricks"]["batchnorm"]["mode"] == "sync"
    expected_bn = "SyncBatchNorm" if cuda else "CPUSyncBatchNorm"
    return (
        run["process_group"] == ("nccl" if cuda else "gloo")
        and run["ddp"]
        and (not sync or expected_bn in run["batchnorm_layers"])
    )


def projection(preset: matrix.Preset, images_per_second: dict[str, float], gpus_per_node: int = 8) -> dict:
    """GPU-hours of every training job of the preset at the measured images/s per GPU, and the
    wall time on one node of ``gpus_per_node`` GPUs (linear scaling, jobs packed onto the GPUs)."""
    images = TRAIN_IMAGES[preset.raw["dataset"]["kind"]]
    gpu_hours, missing = 0.0, set()
    for job in matrix.jobs(preset):
        detector = matrix.canonical(preset, job.detector)
        speed = images_per_second.get(detector)
        if speed is None:
            missing.add(detector)
            continue
        gpu_hours += matrix.train_config(preset, job).optim.epochs * images / speed / 3600
    return {
        "training_jobs": len(matrix.jobs(preset)),
        "train_images": images,
        "gpu_hours": gpu_hours,
        "node_hours": gpu_hours / gpus_per_node,
        "gpus_per_node": gpus_per_node,
        "not_measured": sorted(missing),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["config/voc.yaml", "config/coco.yaml"])
    parser.add_argument("--detectors", nargs="*", help="only these detectors (default: every one of the presets)")
    parser.add_argument("--images", type=int, default=320, help="synthetic training images (VOC-sized)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--pretrain-steps",
        type=int,
        default=30,
        help="steps of each backbone's brief pretraining (default %(default)s)",
    )
    parser.add_argument("--tiny", action="store_true", help="CPU-sized networks and images (what the tests run)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per training")
    parser.add_argument("--work", type=Path, help="keep the data and runs here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON result")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        parser.error("no CUDA device: the full-size check needs a GPU (--tiny runs CPU-sized networks)")
    device = torch.cuda.get_device_name(0) if cuda else f"cpu ({os.cpu_count()} cores)"
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        size = 96 if args.tiny else 500  # VOC's images are about 500 x 375
        generate(
            SynthConfig(
                num_images=args.images + (8 if args.tiny else 32),
                test_fraction=(8 if args.tiny else 32) / (args.images + (8 if args.tiny else 32)),
                image_size=size,
                num_classes=20 if not args.tiny else 4,
                min_object_size=size / 12,
                cls_images_per_class=8 if args.tiny else 16,
            ),
            work / "data",
            workers=min(16, os.cpu_count() or 1),
            force=True,
            progress=False,
        )
        runs, speeds, pretrainings = [], {}, []
        for preset_path in args.presets:
            preset = matrix.load_preset(ROOT / preset_path)
            detectors = sorted({matrix.canonical(preset, job.detector) for job in matrix.jobs(preset)})
            speeds[preset.name] = {}
            backbones: dict[str, Path | None] = {}
            for detector in detectors:
                if args.detectors and detector not in args.detectors:
                    continue
                key = matrix.pretrain_key(preset, detector)
                if key is not None and key not in backbones:
                    recipe = backbone_config(
                        preset, key, work / "data" / "classification", steps=args.pretrain_steps, tiny=args.tiny
                    )
                    done = run_pretraining(recipe, work / "pretrain" / preset.name / key, timeout=args.timeout)
                    done.update(preset=preset.name, backbone_name=key)
                    pretrainings.append(done)
                    backbones[key] = Path(done["backbone"]) if done["ok"] else None
                    state = f"{done['images_per_second']:7.1f} img/s" if done["ok"] else f"FAILED:\n{done['error']}"
                    print(f"{preset.name:5} pretrain {key:11} batch {recipe['batch_size']:3}/GPU {state}", flush=True)
                job = heaviest_job(preset, detector)
                config = check_config(
                    preset,
                    job,
                    work / "data" / "VOCdevkit",
                    epochs=args.epochs,
                    tiny=args.tiny,
                    backbone=backbones.get(key) if key is not None else None,
                )
                result = run_training(config, work / "runs" / preset.name / detector, timeout=args.timeout)
                result.update(
                    preset=preset.name,
                    detector=detector,
                    combo=job.combo,
                    batch_per_gpu=config["optim"]["batch_size"],
                    lr_per_gpu=config["optim"]["lr"],
                    pretrained=config["model"]["pretrained"],
                )
                runs.append(result)
                if result["ok"]:
                    speeds[preset.name][detector] = result["images_per_second"]
                    memory = "-" if result["peak_memory_gib"] is None else f"{result['peak_memory_gib']:.1f} GiB"
                    print(
                        f"{preset.name:5} {detector:11} {job.combo:45} batch {config['optim']['batch_size']:2}/GPU "
                        f"{result['images_per_second']:7.1f} img/s  peak {memory:>9}  data wait {result['data_wait_share']:5.1%}  "
                        f"loss {result['loss_first_quarter']:.2f} -> {result['loss_last_quarter']:.2f}",
                        flush=True,
                    )
                else:
                    print(f"{preset.name:5} {detector:11} FAILED:\n{result['error']}", flush=True)
        projections = {}
        for preset_path in args.presets:
            preset = matrix.load_preset(ROOT / preset_path)
            projections[preset.name] = projection(preset, speeds.get(preset.name, {}))
            p = projections[preset.name]
            note = f" (not measured: {', '.join(p['not_measured'])})" if p["not_measured"] else ""
            print(
                f"{preset.name}: {p['training_jobs']} trainings, {p['gpu_hours']:.0f} GPU-hours, "
                f"{p['node_hours']:.1f} h on {p['gpus_per_node']} GPUs{note}"
            )
    result = {
        "device": device,
        "tiny": args.tiny,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "images": args.images,
        "epochs": args.epochs,
        "pretrain_steps": args.pretrain_steps,
        "pretrainings": pretrainings,
        "runs": runs,
        "projection": projections,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    failed = [
        f"{r['preset']}/{r['detector']}" for r in runs if not (r["ok"] and r["loss_fell"] and r["distributed_path"])
    ] + [f"{p['preset']}/pretrain {p['backbone_name']}" for p in pretrainings if not p["ok"]]
    if failed:
        print(f"failed, loss did not fall, or not the distributed path: {', '.join(failed)}")
    return 1 if failed or not runs else 0


if __name__ == "__main__":
    sys.exit(main())
