"""docs/fidelity.md stays true: every preset value it cites is the preset's value, and every
method setting of the paper presets is cited."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LEDGER = ROOT / "docs" / "fidelity.md"
PRESETS = ("smoke", "mini", "voc", "coco")
TOKEN = re.compile(r"`((?:smoke|mini|voc|coco)(?:,(?:smoke|mini|voc|coco))*):([A-Za-z0-9_.]+)=([^`]+)`")
NOT_METHOD = {"run", "resources", "workers"}  # where and how fast, not what is trained


def cited() -> list[tuple[str, str, object]]:
    return [
        (preset, path, yaml.safe_load(value))
        for presets, path, value in TOKEN.findall(LEDGER.read_text())
        for preset in presets.split(",")
    ]


def preset_data(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())


def lookup(data: dict, path: str):
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            raise KeyError(path)
        data = data[key]
    return data


def method_settings(data: dict) -> set[str]:
    """Dotted paths of every method setting under `detectors` and `pretrain` (a mixup recipe is one setting)."""
    found = set()

    def walk(node, prefix):
        for key, value in node.items():
            if key in NOT_METHOD:
                continue
            path = f"{prefix}.{key}"
            if isinstance(value, dict) and key != "mixup_recipe":
                walk(value, path)
            else:
                found.add(path)

    for section in ("detectors", "pretrain"):
        walk(data[section], section)
    return found


def test_the_ledger_cites_something_of_each_paper_preset():
    presets = {preset for preset, _, _ in cited()}
    assert {"voc", "coco"} <= presets


@pytest.mark.parametrize(("preset", "path", "value"), cited(), ids=lambda v: str(v))
def test_every_cited_value_is_the_presets(preset, path, value):
    assert lookup(preset_data(preset), path) == value


@pytest.mark.parametrize("preset", ["voc", "coco"])
def test_every_method_setting_of_a_paper_preset_is_in_the_ledger(preset):
    listed = {path for name, path, _ in cited() if name == preset}
    missing = sorted(method_settings(preset_data(preset)) - listed)
    assert not missing, f"docs/fidelity.md does not cite {preset}: {missing}"
