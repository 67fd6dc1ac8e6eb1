"""Shared fixtures: a tiny synthetic dataset and a builder of hand-made VOC devkits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from slurm_cluster import missing, slurm_cluster

from bof.config import PretrainConfig, load_config
from bof.data.synth.config import SynthConfig
from bof.data.synth.writer import generate
from bof.data.voc import format_voc_xml

TESTS = Path(__file__).parent
TINY_SYNTH = SynthConfig(num_images=24, image_size=96, num_classes=4, seed=3, cls_images_per_class=5, cls_image_size=32)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """A 24-image synthetic dataset, generated once per test session (read-only by convention)."""
    out = tmp_path_factory.mktemp("synth") / "tiny"
    generate(TINY_SYNTH, out, workers=1, progress=False)
    return out


def write_jpeg(path: Path, width: int, height: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def make_devkit(
    root: Path, images: dict[str, tuple[int, int, list]], *, year: str = "2007", split: str = "trainval", classes=None
) -> Path:
    """Write ``root/VOC<year>`` with one XML + JPEG per image id and a split file.

    ``images`` maps id -> (width, height, [(name, truncated, difficult, (xmin, ymin, xmax, ymax)), ...]).
    """
    year_root = root / f"VOC{year}"
    for index, (image_id, (width, height, objects)) in enumerate(images.items()):
        xml = format_voc_xml(
            folder=f"VOC{year}", filename=f"{image_id}.jpg", width=width, height=height, objects=objects
        )
        (year_root / "Annotations").mkdir(parents=True, exist_ok=True)
        (year_root / "Annotations" / f"{image_id}.xml").write_text(xml)
        write_jpeg(year_root / "JPEGImages" / f"{image_id}.jpg", width, height, seed=index)
    (year_root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (year_root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in images))
    if classes is not None:
        (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    return root


@pytest.fixture
def real_voc(tmp_path) -> Path:
    """The hand-written real-VOC-shaped devkit of tests/data/voc_real, with JPEGs of the sizes its XML gives."""
    root = tmp_path / "VOCdevkit"
    shutil.copytree(TESTS / "data" / "voc_real", root)
    sizes = {"000005": (500, 375), "000007": (500, 333), "2008_000008": (500, 442), "2008_000015": (500, 327)}
    for image_id, (width, height) in sizes.items():
        year = "VOC2012" if "_" in image_id else "VOC2007"
        write_jpeg(root / year / "JPEGImages" / f"{image_id}.jpg", width, height)
    return root


@pytest.fixture
def tiny_config(tiny_synth, tmp_path):
    """A callable: (arch, **overrides) -> (config path, TrainConfig)."""

    def make(arch: str = "yolov3", overrides: tuple[str, ...] = ()):
        model = (
            {"arch": "yolov3", "backbone": "darknet53", "width": 0.125, "depth": 0.34, "input_size": 64}
            if arch == "yolov3"
            else {"arch": "faster_rcnn", "backbone": "small_resnet", "width": 0.125, "min_size": 64, "max_size": 96}
        )
        data = {
            "seed": 1,
            "data": {
                "format": "voc",
                "root": str(tiny_synth / "VOCdevkit"),
                "train": ["2007:trainval"],
                "val": ["2007:test"],
            },
            "model": model,
            "tricks": {"lr_schedule": "cosine"},
            "optim": {"epochs": 2, "batch_size": 4, "lr": 0.002, "warmup_epochs": 0.5},
            "run": {"workers": 0, "val_every": 1, "log_every": 2},
        }
        path = tmp_path / f"{arch}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path, load_config(path, list(overrides))

    return make


def tiny_pretraining(synth_root: Path, **overrides) -> PretrainConfig:
    """Two epochs of a narrow small ResNet on the tiny set's classification images, in this
    process (``workers`` 0), without warmup: a pretraining that runs in seconds."""
    settings = {"data": str(synth_root / "classification"), "backbone": "small_resnet", "width": 0.125}
    settings.update(image_size=32, epochs=2, batch_size=4, warmup_epochs=0, workers=0)
    return PretrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def smoke_pushed(tmp_path_factory):
    """The smoke preset run end to end by `dvc repro report@smoke` in a copy of the project, then pushed to a
    local DVC remote and committed with its dvc.lock: (base folder, workspace, the repro log). Several pipeline and
    fault tests read its results, so it runs once per session (a few minutes)."""
    from workspace import make_workspace, run

    base = tmp_path_factory.mktemp("dvc")
    work = make_workspace(base / "work")
    run(["dvc", "remote", "add", "-d", "local", str(base / "remote")], work)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "remote"], work)
    # what `make run PRESET=smoke` runs (dvc repro report@smoke), one stage at a time so that the
    # tests can check that no stage leaves an earlier one out of date
    stages = [f"{stage}@smoke" for stage in ("data", "pretrain", "train", "evaluate", "report")]
    logs, statuses = [], []
    for index, stage in enumerate(stages):
        logs.append(run(["dvc", "repro", "--single-item", stage], work).stdout)
        statuses.append(run(["dvc", "status", *stages[: index + 1]], work).stdout)
    (base / "after_repro.txt").write_text(
        run(["git", "status", "--porcelain", "--untracked-files=all"], work).stdout
        + "\n--- dvc status ---\n"
        + "\n".join(statuses)
        + "\n--- second repro ---\n"
        + run(["dvc", "repro", "report@smoke"], work).stdout
    )
    # what sharing through DVC takes (README: DVC): a remote (committed above), `dvc push` of the
    # datasets and checkpoints, and dvc.lock committed with the shipped results
    run(["dvc", "push"], work)
    run(["git", "add", "dvc.lock", "results/smoke"], work)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], work)
    return base, work, "\n".join(logs)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> Path:
    """The slurm.conf of a real single-node SLURM cluster, started once for the worker that runs the
    tests in the xdist group "slurm" (every test that uses this fixture must be in that group alone:
    two clusters on one machine share ports and /etc/slurm/slurm.conf)."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as conf:
        yield conf


def pytest_collection_modifyitems(config, items):
    """Refuse a test that uses the SLURM cluster outside the xdist group "slurm" (xdist joins several
    group marks into a new group, which would start a second cluster beside the first and hang)."""
    for item in items:
        if "slurm" in getattr(item, "fixturenames", ()):
            groups = {m.args[0] if m.args else m.kwargs.get("name") for m in item.iter_markers("xdist_group")}
            if groups != {"slurm"}:
                raise pytest.UsageError(
                    f"{item.nodeid} uses the slurm fixture in xdist groups {groups}, not {{'slurm'}}"
                )
