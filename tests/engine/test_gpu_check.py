"""benchmarks/gpu_check.py at tiny sizes on the CPU: the paper presets' heaviest jobs go through
torch.distributed.run and `bof train` as on a GPU, and the projection follows from the measured
images/s (on a GPU the same script runs the full-size networks: README's GPU table); its results
folder grows run by run within a time budget; benchmarks/gpu_node.sh readies a bare node for it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
import torch

from bof.pipeline import matrix

ROOT = Path(__file__).resolve().parents[2]
TINY_VOC = [sys.executable, "benchmarks/gpu_check.py", "--tiny", "--images", "16", "--presets", "config/voc.yaml"]


def load_gpu_check():
    """benchmarks/gpu_check.py as a module (benchmarks/ is no package)."""
    if "gpu_check" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
        sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)  # its dataclass looks itself up there
        spec.loader.exec_module(sys.modules["gpu_check"])
    return sys.modules["gpu_check"]


def processes_naming(text: str) -> list[int]:
    """The processes whose command line holds ``text`` (a test's folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:  # ended meanwhile
            continue
    return found


def end_processes(pids: list[int]) -> None:
    """A failed test's leftovers, ended by their ids."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_gpu_check_trains_each_detector_through_torchrun_and_projects_the_preset(tmp_path):
    out = tmp_path / "check"
    result = subprocess.run([*TINY_VOC, "--out", str(out), "--work", str(tmp_path / "work")], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    report = json.loads((out / "gpu_check.json").read_text())
    preset_of_check = matrix.load_preset(ROOT / "config" / "voc.yaml")
    runs = {run["detector"]: run for run in report["runs"]}
    assert set(runs) == {"yolov3", "frcnn_r50"}, result.stdout + result.stderr
    for run in runs.values():
        assert run["ok"], run.get("error")
        assert run["world_size"] == 1 and run["iterations"] == 2 * (16 // 4)  # 2 epochs of 16 images, batch 4
        assert run["images_per_second"] > 0 and 0 < run["data_wait_share"] < 1 and run["peak_memory_gib"] is None
        assert 0 < run["loss_last_quarter"] < float("inf") and 0 < run["loss_first_quarter"] < float("inf")
    # the heaviest combination of each detector: every freebie of Tables 2 and 3
    assert runs["yolov3"]["combo"] == "bn-sync_shapes_cosine_smooth_mix-beta1.5-1.5"
    assert runs["frcnn_r50"]["combo"] == "cosine_smooth_mix-beta1.5-1.5"
    # one process under torchrun runs the 8-GPU path: a process group, DDP, synchronized BN
    for run in runs.values():
        assert (run["process_group"], run["ddp"], run["distributed_path"]) == ("gloo", True, True)
    assert runs["yolov3"]["batchnorm_layers"] == ["CPUSyncBatchNorm"]
    # each detector starts from a brief pretraining of its backbone (the preset's recipe, one GPU's
    # share of batch and lr), not from identity batch-norm statistics, and trains at one GPU's lr
    pretrainings = {p["backbone_name"]: p for p in report["pretrainings"]}
    assert set(pretrainings) == {"darknet53", "resnet50"}
    for pretraining in pretrainings.values():
        assert (pretraining["ok"], pretraining["process_group"], pretraining["ddp"]) == (True, "gloo", True)
    assert runs["yolov3"]["pretrained"] == pretrainings["darknet53"]["backbone"]
    assert runs["frcnn_r50"]["pretrained"] == pretrainings["resnet50"]["backbone"]
    for detector, run in runs.items():
        recipe = matrix.train_config(preset_of_check, matrix.Job(detector, run["combo"], 0)).optim
        processes = matrix.training_resources(preset_of_check, detector).processes
        assert run["lr_per_gpu"] == pytest.approx(recipe.lr * (recipe.batch_size // processes) / recipe.batch_size)
    assert result.returncode == (0 if all(run["loss_fell"] for run in runs.values()) else 1)
    # the projection: every training job of the preset at its epochs over VOC07+12's images
    preset = matrix.load_preset(ROOT / "config" / "voc.yaml")
    expected = sum(
        matrix.train_config(preset, job).optim.epochs * 16551 / runs[job.detector]["images_per_second"] / 3600
        for job in matrix.jobs(preset)
    )
    projection = report["projection"]["voc"]
    assert projection["gpu_hours"] == pytest.approx(expected) and projection["node_hours"] == pytest.approx(
        expected / 8
    )
    assert projection["training_jobs"] == len(matrix.jobs(preset)) and projection["not_measured"] == []
    assert report["device"].startswith("cpu") and report["tiny"] is True
    assert report["complete"] is True and report["left_out"] == []


def test_gpu_check_refuses_full_size_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", str(tmp_path / "x")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "needs a GPU" in result.stderr and not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_brief_pretraining_keeps_r101_within_float16(tiny_synth, tmp_path):
    """Issue 28, item 3: with identity batch-norm statistics (``pretrained: none``, the old check)
    R101's stride-16 features of a normalised 600 x 600 image grow past float16's largest number
    (65504): under AMP the loss is inf and the check reported a false failure. A few steps of
    pretraining (what the check now runs first, 30 by default) give the statistics of the data
    (10 steps are not enough: two thirds calibrated, the features grew further still)."""
    from bof.engine.checkpoint import load_checkpoint
    from bof.engine.pretrain import PretrainConfig, pretrain
    from bof.models.faster_rcnn import c4_features, resnet_body

    torch.manual_seed(0)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    image = (torch.rand(1, 3, 600, 600) - mean[:, None, None]) / std[:, None, None]

    def peak(body) -> float:
        with torch.no_grad():
            return float(c4_features(body)(image).abs().max())

    float16_max = torch.finfo(torch.float16).max
    assert peak(resnet_body("resnet101", frozen_bn=True)) > float16_max
    config = PretrainConfig(
        data=str(tiny_synth / "classification"),
        backbone="resnet101",
        image_size=32,
        epochs=12,  # 48 steps of 4 images: BN's running statistics 99 % the data's (momentum 0.1)
        batch_size=4,
        warmup_epochs=0,
        workers=0,
        lr=0.01,
    )
    pretrain(config, tmp_path, progress=False)
    body = resnet_body("resnet101", frozen_bn=True)
    body.load_state_dict(load_checkpoint(tmp_path / "backbone.pt")["weights"], strict=False)  # all but fc
    assert peak(body) < float16_max / 100


def test_the_runs_cover_every_detector_once_before_the_other_presets_trainings():
    """Issue 28, item 5: a short budget still covers every code path. YOLOv3 (SyncBN) first, each
    training after its backbone's pretraining, COCO's R101 (a detector VOC lacks) before COCO's
    YOLOv3 and R50 (already covered: they only complete the projection)."""
    gpu_check = load_gpu_check()
    presets = [matrix.load_preset(ROOT / "config" / name) for name in ("voc.yaml", "coco.yaml")]
    assert [step.label for step in gpu_check.plan(presets)] == [
        "voc/pretrain darknet53",
        "voc/train yolov3",
        "voc/pretrain resnet50",
        "voc/train frcnn_r50",
        "coco/pretrain resnet101",
        "coco/train frcnn_r101",
        "coco/pretrain darknet53",
        "coco/train yolov3",
        "coco/pretrain resnet50",
        "coco/train frcnn_r50",
    ]
    assert [step.label for step in gpu_check.plan(presets, ["frcnn_r50"])] == [
        "voc/pretrain resnet50",
        "voc/train frcnn_r50",
        "coco/pretrain resnet50",
        "coco/train frcnn_r50",
    ]


def test_a_run_starts_only_if_the_budget_left_covers_the_longest_finished_run_of_its_kind():
    gpu_check = load_gpu_check()
    estimate, left_out = gpu_check.estimate_seconds, gpu_check.left_out_for_budget
    assert estimate("train", {}) == 0.0
    assert estimate("train", {"pretrain": [40.0, 55.0]}) == 55.0  # before the first training: the longest run
    assert estimate("train", {"pretrain": [40.0], "train": [90.0, 120.0]}) == 120.0
    assert estimate("pretrain", {"pretrain": [40.0], "train": [90.0, 120.0]}) == 40.0
    assert left_out(120.0, 120.0) is None
    assert left_out(120.0, 119.4) == "budget: ~120 s needed, 119 s left"
    minimum = gpu_check.MIN_RUN_SECONDS
    assert left_out(0.0, minimum) is None and left_out(0.0, minimum - 1) is not None


@pytest.mark.slow
def test_a_run_stopped_at_the_budget_before_it_got_going_is_a_failure_not_a_budget_cut(tmp_path):
    """A hang (NCCL, a data loader) and a slow run both reach the end of the budget: only a run that
    had finished a pretraining epoch (its checkpoint) or a training's first log record counts as cut
    by the budget."""
    gpu_check = load_gpu_check()
    pretraining, training = tmp_path / "pretrain", tmp_path / "train"
    pretraining.mkdir()
    training.mkdir()
    assert not gpu_check.made_progress(pretraining, "pretrain") and not gpu_check.made_progress(training, "train")
    (pretraining / "checkpoint.pt").write_bytes(b"")
    (training / "train_log.jsonl").write_text("")
    assert gpu_check.made_progress(pretraining, "pretrain") and not gpu_check.made_progress(training, "train")
    (training / "train_log.jsonl").write_text('{"iteration": 5}\n')
    assert gpu_check.made_progress(training, "train")


def test_runs_beyond_the_budget_are_left_out_listed_and_printed(tmp_path):
    """A budget shorter than MIN_RUN_SECONDS starts nothing: every run is printed and listed as
    left out for the budget (a training for its pretraining's), and the check exits 1 (none ran)."""
    out = tmp_path / "check"
    result = subprocess.run([*TINY_VOC, "--budget", "5", "--out", str(out)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    report = json.loads((out / "gpu_check.json").read_text())
    assert result.returncode == 1, result.stdout + result.stderr
    assert report["complete"] is True and report["runs"] == report["pretrainings"] == []
    assert report["budget_seconds"] == 5 and 0 < report["elapsed_seconds"] < 60
    reasons = {entry["run"]: entry["reason"] for entry in report["left_out"]}
    assert (
        list(reasons)
        == report["plan"]
        == [
            "voc/pretrain darknet53",
            "voc/train yolov3",
            "voc/pretrain resnet50",
            "voc/train frcnn_r50",
        ]
    )
    for run, reason in reasons.items():
        expected = "budget: ~30 s needed" if "pretrain" in run else "its backbone's pretraining was left out"
        assert reason.startswith(expected)
        assert f"left out: {run} ({reason})" in result.stdout
    assert not (out / "runs").exists()


@pytest.mark.slow
def test_a_run_still_going_at_the_end_of_the_budget_is_stopped_with_its_workers_and_left_out(tmp_path):
    """A budget that admits the first run but not its end: 5,000 pretraining steps (~5 min here) in
    a 45 s budget (the run starts with more than MIN_RUN_SECONDS left if the data took under 15 s).
    The launcher and its worker are stopped at the budget (none is left), the stopped run's log is
    kept, the rest is left out, and the check ends within its grace."""
    gpu_check, budget = load_gpu_check(), 45
    out, work = tmp_path / "check", tmp_path / "work"
    command = [*TINY_VOC, "--detectors", "yolov3", "--pretrain-steps", "5000", "--budget", str(budget)]
    started = time.monotonic()
    result = subprocess.run([*command, "--out", str(out), "--work", str(work)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    wall = time.monotonic() - started
    leftovers = processes_naming(str(work))
    end_processes(leftovers)
    assert leftovers == [], "the stopped run's processes outlived the check"
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["runs"] == report["pretrainings"] == [], result.stdout + result.stderr
    assert [entry["run"] for entry in report["left_out"]] == ["voc/pretrain darknet53", "voc/train yolov3"]
    assert report["left_out"][0]["reason"].endswith("at the end of the budget"), report["left_out"]
    assert report["left_out"][1]["reason"] == "its backbone's pretraining was left out"
    assert (out / "runs" / "voc-pretrain-darknet53" / "log.txt").is_file()
    # stopped at the budget less the stop's grace: the check ends within its budget
    assert budget - gpu_check.STOP_GRACE_SECONDS < report["elapsed_seconds"] < budget + 5
    assert wall < budget + 30  # imports and clean-up around it


@pytest.mark.slow
def test_a_killed_check_leaves_the_finished_runs_results_and_logs(tmp_path):
    """SIGTERM (a scheduler's kill) during the second run: gpu_check.json already holds the first
    run's result (written after it, not at the end), with its log and run.json beside it; the
    running launcher's process group is stopped with the check."""
    out, work = tmp_path / "check", tmp_path / "work"
    command = [*TINY_VOC, "--detectors", "yolov3", "--pretrain-steps", "2", "--out", str(out), "--work", str(work)]
    check = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "runs" / "voc-train-yolov3" / "log.txt").exists() and check.poll() is None:
            assert time.monotonic() < deadline, "the first run did not finish in 4 minutes"
            time.sleep(0.2)
        time.sleep(2)  # the training's launcher under way
        check.send_signal(signal.SIGTERM)
        output, _ = check.communicate(timeout=60)
    finally:
        check.kill()
        check.wait()
        leftovers = processes_naming(str(work))
        end_processes(leftovers)
    assert check.returncode == 128 + signal.SIGTERM, output
    assert leftovers == [], "the training's processes outlived the check"
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["complete"] is False and report["runs"] == [] and report["left_out"] == []
    [pretraining] = report["pretrainings"]
    assert pretraining["ok"] and pretraining["backbone_name"] == "darknet53" and pretraining["images_per_second"] > 0
    folder = out / "runs" / "voc-pretrain-darknet53"
    assert json.loads((folder / "run.json").read_text())["images_per_second"] == pretraining["images_per_second"]
    assert (folder / "log.txt").is_file()


def wheel(folder: Path, name: str) -> Path:
    """A pure-Python wheel of one module ``name`` (VALUE = 1), built by hand: no network, no build."""
    files = {
        f"{name}/__init__.py": b"VALUE = 1\n",
        f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{name}-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    digest = {
        path: base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        for path, data in files.items()
    }
    record = "".join(f"{path},sha256={digest[path]},{len(data)}\n" for path, data in files.items())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
        archive.writestr(f"{name}-1.0.dist-info/RECORD", record + f"{name}-1.0.dist-info/RECORD,,\n")
    return path


def node_python(folder: Path) -> Path:
    """A python like a GPU node's: torch and the other packages of this environment, but no bof
    (this environment's editable install of bof is a .pth file that a plain path entry skips)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    site = Path(subprocess.check_output([str(folder / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())  # fmt: skip
    (site / "node.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return folder / "bin" / "python"


def node_environment() -> dict[str, str]:
    """This environment without pip's configuration (its index and wheel folders) or PYTHONPATH."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    environment.pop("PYTHONPATH", None)
    return environment | {"PIP_CONFIG_FILE": os.devnull}


def test_the_node_script_names_missing_modules_and_how_to_download_their_wheels(tmp_path):
    out = tmp_path / "check"
    command = ["bash", "benchmarks/gpu_node.sh", str(out), "--python", sys.executable]
    result = subprocess.run([*command, "--require", "bof_test_absent:bof-test-absent"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env=node_environment())  # fmt: skip
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert result.returncode == 2, result.stdout
    assert f"{sys.executable} lacks bof_test_absent (import names)" in result.stdout
    assert f"pip download -d wheels --only-binary=:all: --python-version {version} --implementation cp" in result.stdout
    assert result.stdout.rstrip().endswith(
        f"--platform manylinux2014_{platform.machine()} bof-test-absent"
    )  # only what is missing
    assert not (out / "gpu_check.json").exists() and (out / "gpu_node.log").read_text() == result.stdout


def test_the_node_script_stops_when_dev_shm_has_less_free_than_asked(tmp_path):
    out = tmp_path / "check"
    result = subprocess.run(["bash", "benchmarks/gpu_node.sh", str(out), "--python", sys.executable,
                             "--shm-min", str(2**40)], cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2 and f"the check needs {2**40} (--shm-min)" in result.stdout
    assert "--shm-size" in result.stdout and not (out / "gpu_check.json").exists()


@pytest.mark.slow
def test_the_node_script_installs_missing_modules_from_wheels_and_runs_bof_from_the_source_tree(tmp_path):
    """On a python without bof (a GPU node's), a module missing there is installed from the wheel
    folder into the results folder, and torchrun's `-m bof pretrain` and `-m bof train` workers
    find bof in this tree through PYTHONPATH: both runs finish, on the 8-GPU path."""
    python = node_python(tmp_path / "node")
    no_bof = subprocess.run([str(python), "-c", "import bof"], cwd=tmp_path, capture_output=True, text=True,
                            env=node_environment())  # fmt: skip
    has_torch = subprocess.run([str(python), "-c", "import torch"], cwd=tmp_path, env=node_environment())
    assert no_bof.returncode == 1 and "No module named 'bof'" in no_bof.stderr and has_torch.returncode == 0
    wheel(tmp_path / "wheels", "bof_test_dep")
    out = tmp_path / "check"
    command = ["bash", "benchmarks/gpu_node.sh", str(out), "--python", str(python), "--wheels", str(tmp_path / "wheels"),
               "--require", "bof_test_dep:bof_test_dep", "--budget", "300", "--", "--tiny", "--images", "8",
               "--epochs", "1", "--pretrain-steps", "2", "--presets", "config/voc.yaml", "--detectors", "yolov3"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=node_environment())
    assert f"installing bof_test_dep from {tmp_path / 'wheels'} into {out / 'python-packages'}" in result.stdout
    assert list((out / "python-packages").rglob("bof_test_dep/__init__.py")), result.stdout
    assert f"bof {__import__('bof').__version__} from {ROOT / 'bof'}" in result.stdout
    report = json.loads((out / "gpu_check.json").read_text())
    [pretraining], [run] = report["pretrainings"], report["runs"]
    assert pretraining["ok"] and (pretraining["process_group"], pretraining["ddp"]) == ("gloo", True), result.stdout
    assert run["ok"] and run["distributed_path"] and run["detector"] == "yolov3", result.stdout
    assert result.returncode == (0 if run["loss_fell"] else 1)
    assert report["complete"] is True and report["budget_seconds"] == 300
