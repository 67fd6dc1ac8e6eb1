"""The library as a package: typed (py.typed shipped), `bof.freebies.__all__` names what it gives,
and a submodule is not hidden by a package attribute of the same name."""

from __future__ import annotations

import importlib
import inspect
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_is_typed_and_ships_its_marker():
    assert (ROOT / "bof" / "py.typed").is_file()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["bof"]


def test_freebies_all_names_what_it_exports():
    freebies = importlib.import_module("bof.freebies")
    public = {
        name for name in vars(freebies) if not name.startswith("_") and not inspect.ismodule(getattr(freebies, name))
    }
    assert set(freebies.__all__) == public
    assert {"weighted_losses", "TrainingSet", "DetectionMixup", "SingleStageAugment", "Target"} <= public


def test_import_as_gives_the_module_not_a_function_of_its_name():
    import bof.models.faster_rcnn as faster_rcnn
    import bof.models.weighted as weighted

    assert inspect.ismodule(faster_rcnn) and inspect.ismodule(weighted)
    assert callable(faster_rcnn.faster_rcnn)
