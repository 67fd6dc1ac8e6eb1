"""Bad input met the way a user meets it: through the commands and the pipeline. Each names
the file, says what is wrong, exits non-zero and writes nothing half-done."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import write_jpeg
from workspace import make_workspace, run

ROOT = Path(__file__).resolve().parents[2]


def bof(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bof", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.epochz=3", "unknown key 'optim.epochz'"),
        ("optim.epochs=many", "optim.epochs: expected an integer, got 'many'"),
        ("optim.epochs=-1", "optim.epochs must be >= 1"),
        ("tricks.mixup.mode=beta", None),  # valid: the control case
        ("tricks.mixup.alpha=0", "mixup beta parameters must be > 0"),
        ("tricks.random_shapes.min=300", "multiples of 32"),
        # what used to pass the checks and crash (or train nonsense) once the run folder existed
        ("optim.step_factor=-1", "optim.step_factor must be in (0, 1], got -1.0"),
        ("optim.lr=.nan", "optim.lr: expected a finite number, got nan"),
        ("optim.weight_decay=.inf", "optim.weight_decay: expected a finite number, got inf"),
        ("model.width=.nan", "model.width: expected a finite number, got nan"),
        ("model.max_size=600", "model: need 0 < min_size < max_size, got 600, 600"),
        ("seed=9223372036854775808", "seed must be in [0, 2**32 - 1 = 4294967295], got 9223372036854775808"),
        ("optim.lr=[1", "override 'optim.lr=[1': not valid YAML (expected ',' or ']', but got '<stream end>'"),
    ],
)
def test_train_config_errors_write_nothing(tiny_config, tmp_path, override, message):
    path, _ = tiny_config("yolov3")
    out = tmp_path / "run"
    extra = ["--set", "tricks.mixup.mode=beta"] if "mixup.alpha" in override else []
    result = bof(
        "train",
        "--config",
        str(path),
        "--out",
        str(out),
        "--quiet",
        "--set",
        "optim.epochs=1",
        "--set",
        override,
        *extra,
    )
    if message is None:
        assert result.returncode == 0, result.stderr[-2000:]
        return
    # the file is named, except for an override that is not YAML (the command line's, not the file's)
    where = override if message.startswith("override") else str(path)
    assert result.returncode == 2 and message in result.stderr and where in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
    assert result.stderr.strip().count("\n") == 0, result.stderr  # one line


def test_a_broken_image_stops_training_before_it_starts(tiny_synth, tiny_config, tmp_path):
    devkit = tmp_path / "VOCdevkit"
    shutil.copytree(tiny_synth / "VOCdevkit", devkit)
    victim = sorted((devkit / "VOC2007" / "JPEGImages").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) * 2 // 3])
    path, _ = tiny_config("yolov3")
    out = tmp_path / "run"
    result = bof("train", "--config", str(path), "--out", str(out), "--quiet", "--set", f"data.root={devkit}")
    assert result.returncode == 2 and f"{victim.name}: JPEG is truncated" in result.stderr
    assert not (out / "checkpoint.pt").exists()
    skip = bof(
        "train",
        "--config",
        str(path),
        "--out",
        str(out),
        "--quiet",
        "--set",
        f"data.root={devkit}",
        "--set",
        "data.on_error=skip",
        "--set",
        "optim.epochs=1",
    )
    assert skip.returncode == 0 and "skipped 1 of" in skip.stderr  # the skip policy names what it dropped


def test_empty_split_and_unknown_results(tiny_synth, tmp_path):
    devkit = tmp_path / "VOCdevkit"
    shutil.copytree(tiny_synth / "VOCdevkit", devkit)
    (devkit / "VOC2007" / "ImageSets" / "Main" / "test.txt").write_text("")
    result = bof("data", "check", "--voc", str(devkit), "--sets", "2007:test")
    assert result.returncode == 2 and "test.txt: image set is empty" in result.stderr
    results = tmp_path / "results"
    results.mkdir()
    for name in (devkit / "classes.txt").read_text().split():
        (results / f"comp4_det_test_{name}.txt").write_text("")
    (results / "comp4_det_test_giraffe.txt").write_text("")
    out = tmp_path / "voc.json"
    result = bof(
        "evaluate", "voc", "--devkit", str(tiny_synth / "VOCdevkit"), "--results", str(results), "--out", str(out)
    )
    assert result.returncode == 2 and "results for unknown class 'giraffe'" in result.stderr and not out.exists()
    (results / "comp4_det_test_giraffe.txt").unlink()
    (results / "comp4_det_test_circle.txt").write_text("999999 0.9 1 1 10 10\n")
    result = bof(
        "evaluate", "voc", "--devkit", str(tiny_synth / "VOCdevkit"), "--results", str(results), "--out", str(out)
    )
    assert (
        result.returncode == 2
        and "comp4_det_test_circle.txt: line 1: unknown image id '999999'" in result.stderr
        and not out.exists()
    )


def test_bad_dataset_through_the_pipeline(tmp_path):
    """A malformed annotation in a user's devkit stops the pipeline's data check, naming the file."""
    work = make_workspace(tmp_path / "work")
    raw = yaml.safe_load((work / "config" / "smoke.yaml").read_text())
    devkit = tmp_path / "mine" / "VOCdevkit" / "VOC2007"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (devkit / folder).mkdir(parents=True)
    write_jpeg(devkit / "JPEGImages" / "a.jpg", 40, 30)
    (devkit / "Annotations" / "a.xml").write_text(
        "<annotation><size><width>40</width><height>30</height></size><object><name>dog</name>"
    )
    for split in ("trainval", "test"):
        (devkit / "ImageSets" / "Main" / f"{split}.txt").write_text("a\n")
    raw["dataset"] = {
        "kind": "voc",
        "root": str(tmp_path / "mine"),
        "archives": [],
        "train": ["2007:trainval"],
        "val": ["2007:test"],
        "classification": "unused",
    }
    preset = work / "config" / "mine.yaml"
    preset.write_text(yaml.safe_dump(raw))
    result = run(["snakemake", "data", "--cores", "1", "--configfile", "config/mine.yaml"], work, check=False)
    assert result.returncode != 0
    logs = "".join(p.read_text() for p in (work / "results" / "smoke" / "logs").glob("check_*.log"))
    assert "a.xml: malformed XML" in logs
    assert not list((work / "results" / "smoke" / "data").glob("check_*.json"))


def test_a_bad_preset_value_stops_the_pipeline_at_start(tmp_path):
    work = make_workspace(tmp_path / "work")
    raw = yaml.safe_load((work / "config" / "smoke.yaml").read_text())
    raw["detectors"]["yolov3"]["random_shapes"]["min"] = 100
    (work / "config" / "bad.yaml").write_text(yaml.safe_dump(raw))
    result = run(["snakemake", "-n", "--configfile", "config/bad.yaml"], work, check=False)
    assert result.returncode != 0 and "100 is not a multiple of 32" in result.stdout + result.stderr
    assert not (work / "results" / "smoke").exists()
    json.dumps(raw)  # the preset itself stays plain data
