"""The paper presets start Tables 1-4 from published ImageNet backbones (issue 24): no pretraining
job unless a table compares pretrainings (Tables 5-6), and a pretraining without ImageNet stops
the workflow before any job, in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from bof.pipeline import matrix

ROOT = Path(__file__).resolve().parents[2]


def dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``snakemake -n`` in an empty working directory (no ImageNet there), torch.hub's cache empty."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "TORCH_HOME": str(tmp_path / "torch"),
    }
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", *args, "--directory", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def job_counts(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", output, re.M)}


def test_the_voc_preset_without_imagenet_lists_no_pretraining_and_fetches_the_published_backbones(tmp_path):
    result = dry_run(tmp_path, "--configfile", "config/voc.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    counts = job_counts(result.stdout)
    assert "pretrain" not in counts and counts["published_backbone"] == 2 and counts["train"] == 15
    # Darknet's file, whose digest bof does not pin, is said to be fetched by hand
    assert (
        f"bof: {tmp_path / 'torch' / 'hub' / 'checkpoints' / 'darknet53.conv.74'} is missing: fetch it once with "
        "`bof fetch-backbone darknet53 --sha256 HEX` (or --from FILE), bof pins no digest for it"
    ) in result.stderr.splitlines()
    preset = matrix.load_preset(ROOT / "config" / "voc.yaml")
    assert matrix.pretrain_jobs(preset) == []
    assert {matrix.train_config(preset, job).model.pretrained for job in matrix.jobs(preset)} == {"imagenet"}
    inputs = {path for job in matrix.jobs(preset) for path in matrix.published_input(preset, job)}
    assert {os.path.basename(path) for path in inputs} == {
        "darknet53.conv.74",
        "resnet50-0676ba61.pth",
    }


def test_asking_for_table5_without_imagenet_stops_before_any_job_in_one_line(tmp_path):
    result = dry_run(tmp_path, "--configfile", "config/voc.yaml", "--config", "tables=[table1,table2,table3,table5]")
    assert result.returncode != 0
    line = (
        f"ConfigError: {ROOT / 'config' / 'voc.yaml'}: its tables pretrain darknet53 on ImageNet, which is not at "
        "data/imagenet (dataset.classification: ImageNet in ImageFolder layout, train/<class>/ and val/<class>/)"
    )
    output = result.stdout + result.stderr
    assert line in [text.strip() for text in output.splitlines()] and "Job stats" not in output
    # with ImageNet there, the same DAG pretrains Darknet-53 plain and with mixup
    (tmp_path / "data" / "imagenet" / "train").mkdir(parents=True)
    result = dry_run(tmp_path, "--configfile", "config/voc.yaml", "--config", "tables=[table1,table2,table3,table5]")
    assert result.returncode == 0 and job_counts(result.stdout)["pretrain"] == 2


def test_coco_compares_pretrainings_from_the_pipeline_and_the_rest_from_published_weights():
    """Table 4 (both columns) from published weights; Tables 5-6 from the pipeline's plain and
    mixup pretrainings, whose plain cells are named apart from the published ones (``preplain``)."""
    preset = matrix.load_preset(ROOT / "config" / "coco.yaml")
    table4 = [entry for row in matrix.table_cells(preset, "table4") for entry in row]
    assert {entry.pretraining for entry in table4} == {"published"}
    table5 = [entry for row in matrix.table_cells(preset, "table5") for entry in row]
    assert {entry.pretraining for entry in table5} == {"plain", "mixup"}
    assert all(entry.combo.endswith("_preplain") for entry in table5 if entry.pretraining == "plain")
    assert matrix.pretrain_jobs(preset) == [
        ("darknet53", "plain"),
        ("darknet53", "mixup"),
        ("resnet101", "plain"),
        ("resnet101", "mixup"),
    ]
    job = matrix.Job(table5[0].detector, table5[0].combo, 0)
    assert matrix.train_config(preset, job).model.pretrained == "results/coco/pretrain/darknet53/plain/backbone.pt"


def test_the_synthetic_presets_keep_their_pipeline_pretrainings():
    for name in ("smoke", "mini"):
        preset = matrix.load_preset(ROOT / "config" / f"{name}.yaml")
        assert all(entry.pretraining != "published" for entry in matrix.cells(preset).values())
        assert not any(combo.endswith("preplain") for _, combo in matrix.cells(preset))
        assert matrix.preflight(preset) == []


def test_the_pipelines_file_names_are_the_publishers():
    from bof.models.published import PUBLISHED

    assert {backbone: os.path.basename(entry.url) for backbone, entry in PUBLISHED.items()} == matrix.PUBLISHED_FILES


def test_an_unwritable_results_folder_is_named(tmp_path, monkeypatch):
    """Checked with os.access (the tests may run as root, who writes anywhere: it is made to say no)."""
    raw = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    raw["results"] = str(tmp_path / "shared" / "results")
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(raw))
    preset = matrix.load_preset(path, default_tables=ROOT / "config" / "tables.yaml")
    assert matrix.preflight(preset) == []
    monkeypatch.setattr(matrix.os, "access", lambda folder, mode: Path(folder) != tmp_path)
    assert matrix.preflight(preset) == [
        f"{path}: results folder {tmp_path / 'shared' / 'results'} cannot be written ({tmp_path} is not writable)"
    ]


def test_a_local_run_on_too_few_gpus_stops_before_any_job(tmp_path):
    """voc's YOLOv3 asks for 8 GPUs a job: run here (not on a cluster) on a machine showing 2
    (a stand-in nvidia-smi), the DAG stops at once in one line; a dry run does not ask."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: a)'\necho 'GPU 1: NVIDIA H200 (UUID: b)'\n"
    )
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    env.update(PATH=f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}", TORCH_HOME=str(tmp_path / "torch"))
    target = "results/voc/runs/yolov3/baseline/seed0/model.pt"
    work = tmp_path / "work"
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "1",
        "--configfile",
        "config/voc.yaml",
        "--directory",
        str(work),
    ]
    result = subprocess.run([*command, target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    line = (
        f"ConfigError: {ROOT / 'config' / 'voc.yaml'}: detectors.yolov3 asks for 8 GPUs a job, this machine has 2: "
        "run it on a cluster (--profile profiles/slurm) or give detectors.yolov3.resources.gpus what is here"
    )
    assert line in [text.strip() for text in (result.stdout + result.stderr).splitlines()]
    assert not (work / "data").exists()  # no job ran (the download would have made it)
    dry = subprocess.run([*command, "-n", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-2000:]


def test_the_visible_devices_are_the_local_gpus(monkeypatch):
    matrix.local_gpus.cache_clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,3,5")
    assert matrix.local_gpus() == 3
    matrix.local_gpus.cache_clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert matrix.local_gpus() == 0
    matrix.local_gpus.cache_clear()


def test_gpus_are_asked_only_where_jobs_run_on_this_machine(monkeypatch):
    """--report, --dag, --touch (no executor, or the touch one), a dry run, a cluster's executor,
    a job inside one: not known (None); a local run: this machine's."""
    from types import SimpleNamespace

    monkeypatch.setattr(matrix, "local_gpus", lambda: 2)
    local = {"executor_plugin": object(), "touch": False, "is_main_process": True, "local_exec": True, "dryrun": False}
    assert matrix.gpus_here(SimpleNamespace(**local)) == 2
    for change in (
        {"executor_plugin": None},
        {"touch": True},
        {"dryrun": True},
        {"local_exec": False},
        {"is_main_process": False},
    ):
        assert matrix.gpus_here(SimpleNamespace(**{**local, **change})) is None, change
