"""Untrusted files: checkpoints cannot run code, archives cannot write outside their target,
XML cannot expand entities, YAML cannot build objects, and no value reaches a shell unquoted."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workspace import make_workspace, run

from bof.engine.checkpoint import load_checkpoint
from bof.errors import BofError


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_runs_code_is_refused(tmp_path):
    """torch.save writes the pickle of an object whose __reduce__ calls os.system: the archive is
    intact (its CRCs match), so only weights_only stops it. The message names what was refused and
    does not repeat torch's advice to load it with weights_only=False."""
    import torch

    marker = tmp_path / "PWNED"
    evil = tmp_path / "model.pt"
    torch.save({"format": "bof-model-1", "model": Evil(marker)}, evil)
    with pytest.raises(BofError) as refused:
        load_checkpoint(evil)
    message = str(refused.value)
    assert message.startswith(f"{evil}: not a loadable checkpoint: refused, it holds Python objects")
    assert "GLOBAL posix.system" in message and "weights_only" not in message
    result = subprocess.run(
        [sys.executable, "-m", "bof", "predict", "--model", str(evil), "--out", str(tmp_path / "p")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "model.pt: not a loadable checkpoint: refused" in result.stderr
    assert "weights_only" not in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_a_bare_pickle_is_not_taken_for_a_checkpoint(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps({"format": "bof-model-1", "model": Evil(marker)}))
    with pytest.raises(BofError, match=r"model.pt: not a checkpoint of torch.save \(no zip archive\)"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path):
    import torch

    path = tmp_path / "checkpoint.pt"
    torch.save({"weights": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(BofError, match="checkpoint.pt: damaged checkpoint \\(its zip archive is cut or broken"):
        load_checkpoint(path)


def test_yaml_cannot_build_objects(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "config.yaml"
    path.write_text(f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    result = subprocess.run(
        [sys.executable, "-m", "bof", "train", "--config", str(path), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "not valid YAML" in result.stderr and not marker.exists()


def test_no_preset_value_reaches_the_shell_unquoted(tmp_path):
    work = make_workspace(tmp_path / "work")
    raw = yaml.safe_load((work / "config" / "smoke.yaml").read_text())
    raw["dataset"]["root"] = "data/odd name; touch INJECTED #"
    raw["dataset"]["classification"] = "data/odd name; touch INJECTED #/classification"
    raw["results"] = "results/odd $(touch INJECTED2)"
    (work / "config" / "odd.yaml").write_text(yaml.safe_dump(raw))
    run(["snakemake", "data", "--cores", "1", "--configfile", "config/odd.yaml"], work)
    assert not (work / "INJECTED").exists() and not (work / "INJECTED2").exists()
    assert (work / "data" / "odd name; touch INJECTED #" / "synth.json").exists()
    assert (work / "results" / "odd $(touch INJECTED2)" / "data" / "check_val.json").exists()


def test_wildcards_cannot_smuggle_paths(tmp_path):
    work = make_workspace(tmp_path / "work")
    target = "results/smoke/runs/yolov3/x;rm -rf ~/seed0/model.pt"
    result = run(["snakemake", target, "-n", "--cores", "1", "--configfile", "config/smoke.yaml"], work, check=False)
    assert result.returncode != 0 and "MissingRuleException" in result.stdout + result.stderr
