"""`bof status`: jobs done, running and waiting, and the time left, from run folders alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from bof.cli import main
from bof.pipeline import matrix
from bof.pipeline.status import estimate_seconds_left, format_status, pipeline_status

ROOT = Path(__file__).resolve().parents[2]


def smoke_preset(tmp_path):
    raw = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    raw["results"] = str(tmp_path / "results")
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(raw))
    (tmp_path / "tables.yaml").write_text((ROOT / "config" / "tables.yaml").read_text())
    return path, matrix.load_preset(path)


def fake_run(folder: Path, *, iterations_logged: int, per_epoch: int, done_seconds: float | None = None):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("{}")
    records = [{"iteration": i, "epoch": (i - 1) // per_epoch + 1} for i in range(1, iterations_logged + 1)]
    (folder / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if done_seconds is not None:
        (folder / "model.pt").write_bytes(b"")
        (folder / "run.json").write_text(json.dumps({"wall_seconds": done_seconds}))


def test_status_counts_and_estimates(tmp_path):
    path, preset = smoke_preset(tmp_path)
    jobs = matrix.jobs(preset)
    yolo = [j for j in jobs if j.detector == "yolov3"]
    frcnn = [j for j in jobs if j.detector != "yolov3"]
    for backbone, mixup in matrix.pretrain_jobs(preset):
        folder = Path(matrix.pretrain_dir(preset, backbone, mixup))
        folder.mkdir(parents=True)
        (folder / "backbone.pt").write_bytes(b"")
        (folder / "run.json").write_text(json.dumps({"wall_seconds": 30.0}))
    epochs = matrix.train_config(preset, yolo[0]).optim.epochs  # 2 in the smoke preset
    fake_run(Path(matrix.run_dir(preset, yolo[0])), iterations_logged=3 * epochs, per_epoch=3, done_seconds=100.0)
    fake_run(Path(matrix.run_dir(preset, yolo[1])), iterations_logged=3, per_epoch=3)  # halfway: epoch 1 of 2
    fake_run(Path(matrix.run_dir(preset, frcnn[0])), iterations_logged=3 * epochs, per_epoch=3, done_seconds=60.0)
    states = {s.name: s for s in pipeline_status(preset)}
    assert sum(s.state == "done" for s in states.values()) == 4 + 2
    running = states[matrix.run_dir(preset, yolo[1])]
    assert running.state == "running" and running.fraction == 0.5
    # left: yolo 100 s x (0.5 + the other untouched YOLO runs), frcnn 60 s x the other untouched runs; over 2 cores
    expected = (100 * (0.5 + len(yolo) - 2) + 60 * (len(frcnn) - 1)) / 2
    assert estimate_seconds_left(list(states.values()), cores=2) == expected
    text = format_status(list(states.values()), cores=2)
    assert text.startswith(f"6 of {len(states)} pretraining and training jobs done, 1 running")
    assert f"about {expected / 60:.0f} min left on 2 cores" in text and "50 %" in text


def test_an_old_unfinished_run_is_interrupted_and_the_cli_prints(tmp_path, capsys):
    path, preset = smoke_preset(tmp_path)
    job = matrix.jobs(preset)[0]
    folder = Path(matrix.run_dir(preset, job))
    fake_run(folder, iterations_logged=1, per_epoch=3)
    for file in folder.iterdir():
        os.utime(file, (0, 0))
    assert {s.name: s for s in pipeline_status(preset)}[str(folder)].state == "interrupted"
    assert main(["status", "--preset", str(path)]) == 0
    assert "interrupted" in capsys.readouterr().out


def test_no_minutes_for_work_whose_pace_was_never_measured(tmp_path):
    """The issue's moment: one pretraining done, the other halfway, no training started. The pretrainings
    have a pace, the detectors none: "roughly 2 min left" there was a guess for ~100 min of trainings."""
    path, preset = smoke_preset(tmp_path)
    raw = yaml.safe_load(path.read_text())
    for settings in raw["pretrain"].values():
        settings["epochs"] = 4
    path.write_text(yaml.safe_dump(raw))
    preset = matrix.load_preset(path)
    (done, *running) = matrix.pretrain_jobs(preset)
    folder = Path(matrix.pretrain_dir(preset, *done))
    folder.mkdir(parents=True)
    (folder / "backbone.pt").write_bytes(b"")
    (folder / "run.json").write_text(json.dumps({"wall_seconds": 30.0}))
    for backbone, mixup in running:
        folder = Path(matrix.pretrain_dir(preset, backbone, mixup))
        folder.mkdir(parents=True)  # two of four epochs done: their records in the log
        (folder / "train_log.jsonl").write_text("".join(json.dumps({"epoch": e, "top1": 0.5}) + "\n" for e in (1, 2)))
    states = pipeline_status(preset)
    assert {s.state for s in states if s.kind == "pretrain"} == {"done", "running"}
    assert [s.fraction for s in states if s.kind == "pretrain" and s.state == "running"] == [0.5] * len(running)
    detectors = sorted({j.detector for j in matrix.jobs(preset)})
    assert all(s.state == "waiting" for s in states if s.kind != "pretrain") and len(detectors) > 1
    assert estimate_seconds_left(states, cores=2) is None
    waiting = len(states) - 1 - len(running)
    assert format_status(states, cores=2).splitlines()[0] == (
        f"1 of {len(states)} pretraining and training jobs done, {len(running)} running, {waiting} waiting; "
        f"time left unknown: no {', '.join(detectors[:-1])} or {detectors[-1]} job has shown its pace yet"
    )
    # once one detector has finished a run, the line still gives no minutes while another has none
    yolo = next(j for j in matrix.jobs(preset) if j.detector == "yolov3")
    fake_run(Path(matrix.run_dir(preset, yolo)), iterations_logged=6, per_epoch=3, done_seconds=100.0)
    text = format_status(pipeline_status(preset), cores=2)
    unpaced = [d for d in detectors if d != "yolov3"]
    assert (
        text.splitlines()[0].endswith(f"; time left unknown: no {' or '.join(unpaced)} job has shown its pace yet")
        and "min left" not in text
    )


def test_replicate_counts_the_second_set_of_seeds(tmp_path, capsys):
    """`make replicate` watches its jobs with `bof status --replicate`: the replication seeds' runs too."""
    path, preset = smoke_preset(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["replication_seeds"] = [7]
    path.write_text(yaml.safe_dump(raw))
    combos = len(matrix.cells(preset))
    trainings = len(matrix.jobs(preset))
    assert main(["status", "--preset", str(path)]) == 0
    plain = capsys.readouterr().out
    assert main(["status", "--preset", str(path), "--replicate"]) == 0
    replicate = capsys.readouterr().out
    jobs = len(matrix.pretrain_jobs(preset)) + trainings  # smoke: one seed, so one more run per combination
    assert f"0 of {jobs} pretraining and training jobs done, 0 running, {jobs} waiting" in plain
    assert f"0 of {jobs + combos} pretraining and training jobs done, 0 running, {jobs + combos} waiting" in replicate
