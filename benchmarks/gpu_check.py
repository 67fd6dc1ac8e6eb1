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

    python benchmarks/gpu_check.py --out gpu_check           # on a GPU, within --budget (8 min)
    python benchmarks/gpu_check.py --tiny --out gpu_check    # on a CPU: tiny networks (the tests)
    bash benchmarks/gpu_node.sh gpu_check --wheels wheels    # on a bare GPU node (see there)

The runs go most informative first: every detector once (YOLOv3, the one with SyncBN, first),
each after its backbone's brief pretraining (a recipe shared by two presets is pretrained once),
then the other presets' trainings of the same detectors (their images/s for the projection). A
run is started only if the time left of ``--budget`` covers the longest finished run of its kind
(and MIN_RUN_SECONDS); the others are left out, printed as such and listed in the result; a run
still going at the end of the budget is stopped (with its launcher's workers) and left out too.

Writes to the folder ``--out`` as it goes: ``gpu_check.json`` after every run (atomically; a
killed check leaves the finished runs' results, ``complete`` false) and, per run,
``runs/<preset>-<kind>-<name>/`` (an earlier check's ``runs/`` is removed first) with the
launcher's output (``log.txt``, written as it comes) and the run's small files (``run.json``,
``train_log.jsonl``, ...; checkpoints stay in ``--work``). Prints one line per run, what was left
out and the projection; exits 1 if a loss did not fall, a run failed or none ran (runs left out
for the budget alone do not fail it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bof.config import to_dict
from bof.data.synth.config import SynthConfig
from bof.data.synth.writer import generate
from bof.io import atomic_write_json
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
# No run starts with less left of the budget: on the 2-core CPU machine a tiny pretraining took
# 8 s, 2 s of them training (the rest torchrun, imports, the model, the data loaders); a GPU adds
# the CUDA context, NCCL and cuDNN's autotuning, and a run stopped before it trains measures nothing.
MIN_RUN_SECONDS = 30.0
STOP_GRACE_SECONDS = 10.0  # for torchrun to pass SIGTERM on to its worker before SIGKILL
RUN_FILES = ("run.json", "metrics.json", "config.yaml", "train_log.jsonl")  # small: kept in --out


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


@dataclass(frozen=True, eq=False)
class Step:
    """One run of the check: a backbone's pretraining (``kind`` "pretrain") or a detector's
    training ("train") for one preset."""

    preset: matrix.Preset
    kind: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.preset.name}/{self.kind} {self.name}"

    @property
    def folder(self) -> str:
        return f"{self.preset.name}-{self.kind}-{self.name}"


def plan(presets: list[matrix.Preset], only: list[str] | None = None) -> list[Step]:
    """The runs, most informative first, so that a short budget still covers every code path:
    each detector once, at the first preset that has it, after its backbone's pretraining (YOLOv3
    first: its SyncBN is the part of the 8-GPU path the others lack); then the other presets'
    trainings of those detectors, whose images/s only complete the projection."""
    first: list[Step] = []
    again: list[Step] = []
    seen: set[str] = set()
    for preset in presets:
        detectors = sorted({matrix.canonical(preset, job.detector) for job in matrix.jobs(preset)})
        detectors.sort(key=lambda detector: not sync_bn(preset, detector))
        for detector in detectors:
            if only and detector not in only:
                continue
            key = matrix.pretrain_key(preset, detector)
            steps = [Step(preset, "pretrain", key)] if key is not None else []
            (again if detector in seen else first).extend([*steps, Step(preset, "train", detector)])
            seen.add(detector)
    return first + again


def sync_bn(preset: matrix.Preset, detector: str) -> bool:
    """Whether the detector's heaviest combination synchronizes batch norm across GPUs."""
    return matrix.train_config(preset, heaviest_job(preset, detector)).tricks.batchnorm.mode == "sync"


def estimate_seconds(kind: str, walls: dict[str, list[float]]) -> float:
    """A run's expected wall time: the longest finished run of its kind, or of any kind before the
    first of its kind has finished (a training outlasts a pretraining). A later preset's larger
    images can take longer still: the budget's timeout stops such a run."""
    return max(walls.get(kind) or [wall for kind_walls in walls.values() for wall in kind_walls] or [0.0])


def left_out_for_budget(estimate: float, remaining: float) -> str | None:
    """Why a run is not started with ``remaining`` seconds of the budget left, or None if it fits."""
    needed = max(estimate, MIN_RUN_SECONDS)
    return f"budget: ~{needed:.0f} s needed, {max(remaining, 0.0):.0f} s left" if remaining < needed else None


def torchrun(command: str, config: dict, out: Path, folder: Path, *, timeout: float) -> int | None:
    """``bof <command>`` under torch.distributed.run with one process, as the pipeline starts it,
    writing its run to ``out``. Its output goes to ``folder/log.txt`` as it comes (a killed check
    keeps it), and the run's small files are copied beside it at the end (its checkpoints stay in
    ``out``). Returns the exit status, or None if it ran past ``timeout`` seconds and was stopped."""
    shutil.rmtree(out, ignore_errors=True)  # an earlier check's run there would be resumed, not measured
    out.mkdir(parents=True)
    folder.mkdir(parents=True, exist_ok=True)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    launch += ["-m", "bof", command, "--config-json", json.dumps(config), "--out", str(out), "--quiet"]
    with (folder / "log.txt").open("w") as log:
        # its own process group: the launcher, its worker and the worker's data loaders end together
        process = subprocess.Popen(launch, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            stop(process)
            code = None
        except BaseException:  # Ctrl-C, or SIGTERM (see main): no training left running on the GPU
            stop(process)
            raise
    for name in RUN_FILES:
        if (out / name).is_file():
            shutil.copy2(out / name, folder / name)
    return code


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the launcher's process group (torchrun passes it on to its worker), then SIGKILL
    to whatever of the group is left after STOP_GRACE_SECONDS."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def made_progress(run: Path, kind: str) -> bool:
    """Whether a run stopped at the end of the budget had got going: a pretraining's first
    epoch (its checkpoint), a training's first log record."""
    if kind == "pretrain":
        return (run / "checkpoint.pt").is_file()
    log = run / "train_log.jsonl"
    return log.is_file() and log.stat().st_size > 0


def failure(code: int | None, wall: float, folder: Path) -> dict:
    return {
        "ok": False,
        "wall_seconds": wall,
        "timed_out": code is None,
        "error": (folder / "log.txt").read_text(errors="replace")[-3000:],
    }


def launch(command: str, config: dict, out: Path, folder: Path, *, timeout: float) -> tuple[dict, dict | None]:
    """``bof <command>`` through :func:`torchrun`: the result's common part, and the run's
    ``run.json`` (None if it failed)."""
    started = time.perf_counter()
    code = torchrun(command, config, out, folder, timeout=timeout)
    wall = time.perf_counter() - started
    if code != 0:
        return failure(code, wall, folder), None
    run = json.loads((out / "run.json").read_text())
    common = {"ok": True, "wall_seconds": wall, "images_per_second": run["images_per_second"]}
    return {**common, "process_group": run["process_group"], "ddp": run["ddp"]}, run


def run_pretraining(config: dict, out: Path, folder: Path, *, timeout: float) -> dict:
    """``bof pretrain`` under torch.distributed.run with one process: its images/s and backbone."""
    result, run = launch("pretrain", config, out, folder, timeout=timeout)
    if run is None:
        return result
    return {
        **result,
        "batch_per_gpu": config["batch_size"],
        "epochs": config["epochs"],
        "backbone": str(out / "backbone.pt"),
    }


def run_training(config: dict, out: Path, folder: Path, *, timeout: float) -> dict:
    """``bof train`` under torch.distributed.run with one process: its speed, memory, path and loss."""
    result, run = launch("train", config, out, folder, timeout=timeout)
    if run is None:
        return result
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [sum(value for key, value in record.items() if key.startswith("loss")) for record in records]
    head, tail = losses[: max(1, len(losses) // 4)], losses[-max(1, len(losses) // 4) :]
    first, last = sum(head) / len(head), sum(tail) / len(tail)
    return {
        **result,
        "data_wait_share": run["data_wait_share"],
        "peak_memory_gib": run["peak_memory_bytes"] / 2**30 if run["peak_memory_bytes"] is not None else None,
        "amp": run["amp"],
        "world_size": run["world_size"],
        "batchnorm_layers": run["batchnorm_layers"],
        "distributed_path": distributed_path(config, run),
        "iterations": run["iterations"],
        "loss_first_quarter": json_number(first),
        "loss_last_quarter": json_number(last),
        "loss_fell": last < first,
    }


def json_number(value: float) -> float | str:
    """An infinite or NaN loss (float16 overflow under AMP) as the text "inf" or "nan": standard
    JSON has no such numbers."""
    return value if math.isfinite(value) else str(value)


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
    images = TRAIN_IMAGES[preset.dataset.kind]
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


def save(out: Path, report: dict, presets: list[matrix.Preset], started: float) -> None:
    """The check so far to ``out/gpu_check.json``, atomically (a kill leaves the previous state),
    with its time since ``started`` (time.monotonic) and the projection from the images/s
    measured so far."""
    report["elapsed_seconds"] = time.monotonic() - started
    speeds: dict[str, dict[str, float]] = {}
    for run in report["runs"]:
        if run["ok"]:
            speeds.setdefault(run["preset"], {})[run["detector"]] = run["images_per_second"]
    report["projection"] = {preset.name: projection(preset, speeds.get(preset.name, {})) for preset in presets}
    atomic_write_json(out / "gpu_check.json", report)


def raise_system_exit(signum: int, frame: object) -> None:
    """SIGTERM or SIGHUP (a scheduler's kill, a closed terminal) unwinds the check like Ctrl-C, so
    that the running launcher's process group is stopped with it, not left training on the GPU."""
    for other in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(other, signal.SIG_IGN)  # a second one would cut that short
    raise SystemExit(128 + signum)


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
    parser.add_argument(
        "--budget",
        type=float,
        default=480,
        help="seconds for the whole check (default %(default)s): runs that do not fit are left out",
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run at most (default %(default)s)")
    parser.add_argument(
        "--work", type=Path, help="keep the data, checkpoints and runs here (default: a temporary folder)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the results folder (gpu_check.json, runs/)")
    args = parser.parse_args(argv)
    if args.out.suffix == ".json":
        parser.error(f"--out {args.out}: a folder now (it receives gpu_check.json and each run's log)")
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        parser.error("no CUDA device: the full-size check needs a GPU (--tiny runs CPU-sized networks)")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, raise_system_exit)
    started = time.monotonic()
    device = torch.cuda.get_device_name(0) if cuda else f"cpu ({os.cpu_count()} cores)"
    presets = [matrix.load_preset(ROOT / path) for path in args.presets]
    steps = plan(presets, args.detectors)
    print(f"{device}, torch {torch.__version__}, budget {args.budget:.0f} s: {len(steps)} runs", flush=True)
    report = {
        "complete": False,
        "device": device,
        "tiny": args.tiny,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "images": args.images,
        "epochs": args.epochs,
        "pretrain_steps": args.pretrain_steps,
        "budget_seconds": args.budget,
        "elapsed_seconds": 0.0,
        "plan": [step.label for step in steps],
        "pretrainings": [],
        "runs": [],
        "left_out": [],
    }
    shutil.rmtree(args.out / "runs", ignore_errors=True)  # an earlier check's: this one's runs only
    save(args.out, report, presets, started)
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        synthetic_data(work / "data", images=args.images, tiny=args.tiny)
        walls: dict[str, list[float]] = {}  # kind -> wall times of its finished runs
        recipes: dict[str, tuple[str, Path | None]] = {}  # a pretraining recipe (JSON) -> its run, backbone
        backbones: dict[tuple[str, str], Path | None] = {}  # (preset, backbone) -> its pretrained weights
        for step in steps:
            remaining = started + args.budget - time.monotonic()
            reason = left_out_for_budget(estimate_seconds(step.kind, walls), remaining)
            key = matrix.pretrain_key(step.preset, step.name) if step.kind == "train" else step.name
            if step.kind == "train" and key is not None and (step.preset.name, key) not in backbones:
                reason = "its backbone's pretraining was left out"
            if step.kind == "pretrain":
                recipe = backbone_config(
                    step.preset, step.name, work / "data" / "classification", steps=args.pretrain_steps, tiny=args.tiny
                )
                if json.dumps(recipe, sort_keys=True) in recipes:  # an earlier run's recipe: the same weights
                    label, backbones[step.preset.name, key] = recipes[json.dumps(recipe, sort_keys=True)]
                    print(f"{step.label}: the recipe of {label}, whose backbone it reuses", flush=True)
                    continue
            timeout = min(args.timeout, remaining - STOP_GRACE_SECONDS)  # the stop's grace within the budget
            if reason is None:
                folder = args.out / "runs" / step.folder
                if step.kind == "pretrain":
                    result = run_pretraining(recipe, work / "pretrain" / step.folder, folder, timeout=timeout)
                    result.update(preset=step.preset.name, backbone_name=step.name)
                else:
                    backbone = backbones.get((step.preset.name, key))
                    result = check_training(
                        step, work, folder, backbone, epochs=args.epochs, tiny=args.tiny, timeout=timeout
                    )
                if not result["ok"] and result["timed_out"] and timeout < args.timeout:
                    if made_progress(work / step.kind / step.folder, step.kind):
                        reason = f"budget: stopped after {result['wall_seconds']:.0f} s, at the end of the budget"
                    else:  # a hang (NCCL, a data loader) looks the same: a failure, not a budget cut
                        result["error"] = (
                            f"stopped at the end of the budget after {result['wall_seconds']:.0f} s without "
                            f"having finished a {'first epoch' if step.kind == 'pretrain' else 'log_every steps'}\n"
                            + result["error"]
                        )
            if reason is not None:
                report["left_out"].append({"run": step.label, "reason": reason})
                print(f"left out: {step.label} ({reason})", flush=True)
            else:
                walls.setdefault(step.kind, []).append(result["wall_seconds"])
                if step.kind == "pretrain":
                    backbone = Path(result["backbone"]) if result["ok"] else None
                    backbones[step.preset.name, step.name] = backbone
                    recipes[json.dumps(recipe, sort_keys=True)] = step.label, backbone
                report["pretrainings" if step.kind == "pretrain" else "runs"].append(result)
                print(summary(step, result), flush=True)
            save(args.out, report, presets, started)
    report["complete"] = True
    save(args.out, report, presets, started)
    return conclude(report, args.out)


def synthetic_data(root: Path, *, images: int, tiny: bool) -> None:
    """VOC-sized detection images (``images`` to train on, and a test split) and the backbones'
    classification images under ``root``."""
    size = 96 if tiny else 500  # VOC's images are about 500 x 375
    test = 8 if tiny else 32
    generate(
        SynthConfig(
            num_images=images + test,
            test_fraction=test / (images + test),
            image_size=size,
            num_classes=4 if tiny else 20,
            min_object_size=size / 12,
            cls_images_per_class=8 if tiny else 16,
        ),
        root,
        workers=min(16, os.cpu_count() or 1),
        force=True,
        progress=False,
    )


def check_training(
    step: Step, work: Path, folder: Path, backbone: Path | None, *, epochs: int, tiny: bool, timeout: float
) -> dict:
    """The detector's heaviest combination trained as :func:`check_config` sets it up."""
    job = heaviest_job(step.preset, step.name)
    config = check_config(step.preset, job, work / "data" / "VOCdevkit", epochs=epochs, tiny=tiny, backbone=backbone)
    result = run_training(config, work / "train" / step.folder, folder, timeout=timeout)
    result.update(
        preset=step.preset.name,
        detector=step.name,
        combo=job.combo,
        batch_per_gpu=config["optim"]["batch_size"],
        lr_per_gpu=config["optim"]["lr"],
        pretrained=config["model"]["pretrained"],
    )
    return result


def conclude(report: dict, out: Path) -> int:
    """Prints the projection and what was left out or failed; the exit status: 1 if a run failed,
    its loss did not fall or it missed the 8-GPU path, or none ran."""
    for name, p in report["projection"].items():
        note = f" (not measured: {', '.join(p['not_measured'])})" if p["not_measured"] else ""
        print(
            f"{name}: {p['training_jobs']} trainings, {p['gpu_hours']:.0f} GPU-hours, "
            f"{p['node_hours']:.1f} h on {p['gpus_per_node']} GPUs{note}"
        )
    runs, pretrainings, left_out = report["runs"], report["pretrainings"], report["left_out"]
    failed = [
        f"{r['preset']}/{r['detector']}" for r in runs if not (r["ok"] and r["loss_fell"] and r["distributed_path"])
    ] + [f"{p['preset']}/pretrain {p['backbone_name']}" for p in pretrainings if not p["ok"]]
    if left_out:
        print(f"left out ({len(left_out)} of {len(report['plan'])}): {', '.join(r['run'] for r in left_out)}")
    if failed:
        print(f"failed, loss did not fall, or not the distributed path: {', '.join(failed)}")
    print(f"{report['elapsed_seconds']:.0f} s of the {report['budget_seconds']:.0f} s budget; results in {out}")
    return 1 if failed or not runs else 0


def summary(step: Step, result: dict) -> str:
    """The run's line of the check's output."""
    preset, seconds = step.preset.name, f"{result['wall_seconds']:4.0f} s"
    if not result["ok"]:
        return f"{preset:5} {step.kind} {step.name} FAILED after {seconds}:\n{result['error']}"
    speed = f"batch {result['batch_per_gpu']:3}/GPU {result['images_per_second']:7.1f} img/s"
    if step.kind == "pretrain":
        return f"{preset:5} pretrain {step.name:11} {speed}  {seconds}"
    memory = "-" if result["peak_memory_gib"] is None else f"{result['peak_memory_gib']:.1f} GiB"
    first, last = (
        f"{loss:.2f}" if isinstance(loss, float) else loss
        for loss in (result["loss_first_quarter"], result["loss_last_quarter"])
    )
    return (
        f"{preset:5} {step.name:11} {result['combo']:45} {speed}  peak {memory:>9}  "
        f"data wait {result['data_wait_share']:5.1%}  loss {first} -> {last}  {seconds}"
    )


if __name__ == "__main__":
    sys.exit(main())
