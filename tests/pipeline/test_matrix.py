"""The experiment matrix: presets expand into shared, canonical jobs; the DAG is complete."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bof.config import TricksConfig, build
from bof.errors import ConfigError
from bof.pipeline import matrix

ROOT = Path(__file__).resolve().parents[2]
PRESETS = ("smoke", "mini", "voc", "coco")


@pytest.fixture(params=PRESETS)
def preset(request):
    return matrix.load_preset(ROOT / "config" / f"{request.param}.yaml")


def test_presets_load_and_every_job_has_a_valid_config(preset):
    jobs = matrix.jobs(preset)
    assert len({(j.detector, j.combo, j.seed) for j in jobs}) == len(jobs)
    for job in jobs:
        config = matrix.train_config(preset, job)
        assert config.seed == job.seed
    for backbone, pretraining in matrix.pretrain_jobs(preset):
        assert matrix.pretrain_config(preset, backbone, pretraining).mixup is (pretraining == "mixup")


def test_shared_combinations_train_once():
    # all six tables, as `--config 'tables=[table1,...,table6]'` asks of the mini preset
    raw = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    raw["tables"] = [f"table{n}" for n in range(1, 7)]
    preset = matrix.load_preset(ROOT / "config" / "mini.yaml", raw=raw)
    t1, t2, t4, t5 = (matrix.table_cells(preset, name) for name in ("table1", "table2", "table4", "table5"))
    assert t1[0][0] == t2[3][0]  # Table 1's baseline (the 81.5 model: SyncBN, random shapes) is a Table 2 row
    assert t2[-2][0] == t5[0][0] and t2[-1][0] == t5[0][1]  # stacked rows = Table 5's plain-backbone cells
    assert t4[2][1] == t5[1][1]  # YOLOv3 with all freebies = mixup in both phases
    t3, t6 = matrix.table_cells(preset, "table3"), matrix.table_cells(preset, "table6")
    assert t6[0][0] == t3[-2][0]  # frcnn_r101 is the same detector as frcnn_r50 in this preset
    # 19 combinations, 3 seeds; each backbone plain and mixup (mini runs no length controls)
    assert len(matrix.jobs(preset)) == 19 * 3 and len(matrix.pretrain_jobs(preset)) == 4


def test_the_default_mini_job_trains_tables_2_3_4_and_6_with_figures_on_yolov3():
    preset = matrix.load_preset(ROOT / "config" / "mini.yaml")
    assert list(preset.tables) == ["table2", "table3", "table4", "table6"]
    assert [row.detector for row in preset.tables["table4"].rows] == ["frcnn_r50", "frcnn_r101", "yolov3"]
    # GluonCV's script variant of Faster R-CNN's mixup is a row the paper does not have (config/budget.yaml runs it)
    assert matrix.left_out(preset) == {"table3": ["+ mixup, GluonCV's script"]}
    combos = {(job.detector, job.combo) for job in matrix.jobs(preset)}
    # Table 3's five rows, Table 6's two cells on the mixup-pretrained backbone (Table 4's R50 and
    # R101 rows share them); Table 2's seven rows and Table 4's YOLOv3 row (all freebies, mixup backbone)
    assert combos == {
        ("frcnn_r50", combo)
        for combo in (
            "noaug",
            "baseline",
            "cosine",
            "cosine_smooth",
            "cosine_smooth_mix-beta1.5-1.5",
            "cosine_smooth_premix",
            "cosine_smooth_mix-beta1.5-1.5_premix",
        )
    } | {
        ("yolov3", combo)
        for combo in (
            "noaug",
            "baseline",
            "bn-sync",
            "bn-sync_shapes",
            "bn-sync_shapes_cosine",
            "bn-sync_shapes_cosine_smooth",
            "bn-sync_shapes_cosine_smooth_mix-beta1.5-1.5",
            "bn-sync_shapes_cosine_smooth_mix-beta1.5-1.5_premix",
        )
    }
    assert len(matrix.jobs(preset)) == 15 * 3 and matrix.pretrain_jobs(preset) == [
        ("darknet53", "plain"),
        ("darknet53", "mixup"),
        ("small_resnet", "plain"),
        ("small_resnet", "mixup"),
    ]
    # the plain and mixup backbones pretrain alike but for mixup: no length control to run
    for backbone in ("darknet53", "small_resnet"):
        plain, mixup = (matrix.pretrain_config(preset, backbone, p) for p in ("plain", "mixup"))
        assert plain.epochs == mixup.epochs == 100
        assert {k: v for k, v in vars(plain).items() if k != "mixup"} == {
            k: v for k, v in vars(mixup).items() if k != "mixup"
        }
    assert not any("prelong" in t for t in matrix.metric_targets(preset))
    # Figures 5-7 on YOLOv3, as the paper draws them: Figure 5 compares Table 2's "+ mixup" row and the
    # row it stacks on (identical but for mixup; Table 1 is not run), Figure 6b its step and cosine rows, Figure 7
    # shows Table 4's YOLOv3 freebies model; Figures 8 and 9 pair each detector's Table 4 row
    figures = {name: [c.combo for c in cells] for name, cells in matrix.figure_cells(preset).items()}
    assert figures["figure5"] == ["bn-sync_shapes_cosine_smooth", "bn-sync_shapes_cosine_smooth_mix-beta1.5-1.5"]
    assert figures["figure6"] == ["bn-sync_shapes", "bn-sync_shapes_cosine"]
    assert figures["figure7"] == ["bn-sync_shapes_cosine_smooth_mix-beta1.5-1.5_premix"]
    assert figures["figure8"] == ["baseline", "bn-sync_shapes_cosine_smooth_mix-beta1.5-1.5_premix"]
    assert figures["figure9"] == ["baseline", "cosine_smooth_mix-beta1.5-1.5_premix"]
    assert matrix.report_figures(preset) == [
        "figure1", "figure2", "figure3", "figure4", "figure5", "figure6a", "figure6b", "figure7", "figure8", "figure9"
    ]  # fmt: skip


def test_leave_out_must_name_rows_the_table_has(tmp_path):
    raw = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    raw["leave_out"] = {"table4": ["YOLOv4"]}
    (tmp_path / "tables.yaml").write_text((ROOT / "config" / "tables.yaml").read_text())
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"bad.yaml: leave_out names rows \['YOLOv4'\] that table4 does not have"):
        matrix.load_preset(path)


def test_figure_detector_must_be_a_preset_detector(tmp_path):
    raw = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    raw["tables"] = ["table1"]  # YOLOv3 only
    raw["detectors"] = {"yolov3": raw["detectors"]["yolov3"]}
    raw["figures"]["detector"] = "frcnn_r50"
    (tmp_path / "tables.yaml").write_text((ROOT / "config" / "tables.yaml").read_text())
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        ConfigError, match=r"bad.yaml: figures.detector 'frcnn_r50' is not one of the preset's detectors"
    ):
        matrix.load_preset(path)


def test_combo_names_are_canonical():
    def typed(tricks: dict) -> TricksConfig:
        return build(TricksConfig, tricks, "tricks")

    baseline = {"lr_schedule": "step", "batchnorm": {"mode": "group", "group_size": 4}}
    tricks = {
        "label_smoothing": True,
        "lr_schedule": "cosine",
        "batchnorm": {"mode": "sync"},
        "random_shapes": {"enabled": True, "min": 96},
    }
    name = matrix.combo_name(typed(tricks), typed(baseline), "plain")
    assert name == "bn-sync_shapes_cosine_smooth"
    assert matrix.combo_name(typed(dict(reversed(tricks.items()))), typed(baseline), "plain") == name
    assert matrix.combo_name(typed(baseline), typed(baseline), "plain") == "baseline"
    beta = {**baseline, "mixup": {"mode": "beta", "alpha": 1.0, "beta": 1.0, "weighted": False}}
    assert matrix.combo_name(typed(beta), typed(baseline), "mixup") == "mix-beta1-1-unweighted_premix"
    gluoncv_faster_rcnn = {**baseline, "mixup": {"mode": "fixed", "weighted": False, "loss_scale": 0.5}}
    assert matrix.combo_name(typed(gluoncv_faster_rcnn), typed(baseline), "plain") == "mix-fixed-unweighted-scale0.5"
    assert matrix.combo_name(typed(tricks), typed(baseline), "plain-long") == "bn-sync_shapes_cosine_smooth_prelong"
    # the group baseline against plain BN names its group size; a field of no slug's (the shapes' range) names nothing
    assert matrix.combo_name(typed(baseline), typed({}), "plain") == "bn-group4"
    assert matrix.combo_name(typed({"random_shapes": {"min": 96}}), typed({}), "plain") == "baseline"


def test_every_presets_combinations_keep_their_names():
    """The names derived from the tricks' own slugs are those the hand-written clauses of bof
    8ef395a gave (run folders and shipped results live under them)."""
    names = {
        name: sorted(
            {f"{job.detector}/{job.combo}" for job in matrix.jobs(matrix.load_preset(ROOT / "config" / f"{name}.yaml"))}
        )
        for name in ("mini", "voc")
    }
    assert names["mini"] == [
        "frcnn_r50/baseline",
        "frcnn_r50/cosine",
        "frcnn_r50/cosine_smooth",
        "frcnn_r50/cosine_smooth_mix-beta1.5-1.5",
        "frcnn_r50/cosine_smooth_mix-beta1.5-1.5_premix",
        "frcnn_r50/cosine_smooth_premix",
        "frcnn_r50/noaug",
        "yolov3/baseline",
        "yolov3/bn-sync",
        "yolov3/bn-sync_shapes",
        "yolov3/bn-sync_shapes_cosine",
        "yolov3/bn-sync_shapes_cosine_smooth",
        "yolov3/bn-sync_shapes_cosine_smooth_mix-beta1.5-1.5",
        "yolov3/bn-sync_shapes_cosine_smooth_mix-beta1.5-1.5_premix",
        "yolov3/noaug",
    ]
    assert names["voc"] == [
        "frcnn_r50/baseline",
        "frcnn_r50/cosine",
        "frcnn_r50/cosine_smooth",
        "frcnn_r50/cosine_smooth_mix-beta1.5-1.5",
        "frcnn_r50/noaug",
        "yolov3/baseline",
        "yolov3/bn-sync",
        "yolov3/bn-sync_shapes",
        "yolov3/bn-sync_shapes_cosine",
        "yolov3/bn-sync_shapes_cosine_smooth",
        "yolov3/bn-sync_shapes_cosine_smooth_mix-beta1.5-1.5",
        "yolov3/bn-sync_shapes_mix-beta1-1",
        "yolov3/bn-sync_shapes_mix-beta1.5-1.5",
        "yolov3/bn-sync_shapes_mix-fixed-unweighted",
        "yolov3/noaug",
    ]


def test_job_configs_carry_the_preset_details():
    raw = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    raw["tables"] = ["table2", "table5"]  # Table 5 runs on request (`--config tables=[...]`)
    preset = matrix.load_preset(ROOT / "config" / "mini.yaml", raw=raw)
    rows = matrix.table_cells(preset, "table2")
    shapes = matrix.train_config(preset, matrix.Job(rows[3][0].detector, rows[3][0].combo, 0))
    assert shapes.tricks.random_shapes.enabled and (
        shapes.tricks.random_shapes.min,
        shapes.tricks.random_shapes.max,
    ) == (64, 128)
    assert shapes.tricks.batchnorm.mode == "sync"
    mixed = matrix.train_config(preset, matrix.Job(rows[-1][0].detector, rows[-1][0].combo, 0))
    assert mixed.tricks.mixup.mode == "beta" and mixed.tricks.mixup.off_last_epochs == 9
    assert mixed.model.pretrained == "results/mini/pretrain/darknet53/plain/backbone.pt"
    premix = matrix.table_cells(preset, "table5")[1][1]
    assert matrix.train_config(preset, matrix.Job(premix.detector, premix.combo, 0)).model.pretrained.endswith(
        "darknet53/mixup/backbone.pt"
    )


def test_bad_values_name_the_preset(tmp_path):
    raw = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    raw["detectors"]["yolov3"]["optim"]["epochs"] = -1
    (tmp_path / "tables.yaml").write_text((ROOT / "config" / "tables.yaml").read_text())
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"bad.yaml: yolov3/.*optim.epochs must be >= 1"):
        matrix.load_preset(path)


def snakemake(*args, cwd=ROOT, env=None):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "voc",
            {
                "download": 3,
                "check_data": 2,
                "published_backbone": 2,  # Darknet-53 and ResNet-50: no pretraining in Tables 1-3
                "pretrain": None,
                "train": 15,
                "evaluate_voc": 15,
                "run_record": 15,  # each run's run.json and val_curve.json beside its metrics
                "figure_data": 3,  # Figures 1, 5 and 7
                "figure_data_training_pair": 1,  # Figures 2-3
                "report": 1,
            },
        ),
        (
            "coco",
            {
                "download": 3,
                "check_data": 2,
                "published_backbone": 3,  # Table 4's
                "pretrain": 4,  # Tables 5-6: Darknet-53 and ResNet-101, plain and mixup
                "train": 16,
                "evaluate_coco": 14,
                "run_record": 16,
                "figure_data": 3,  # Figures 1, 5 and 7
                "figure_data_training_pair": 1,  # Figures 2-3
                "report": 1,
            },
        ),
    ],
)
def test_paper_presets_dry_run_the_full_dag(name, expected, tmp_path):
    (tmp_path / "data" / "imagenet" / "train").mkdir(parents=True)  # what coco's Tables 5-6 pretrain on
    result = snakemake(
        "-n", "--configfile", f"config/{name}.yaml", "--directory", str(tmp_path), env={"TORCH_HOME": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    for rule, count in expected.items():
        assert counts.get(rule) == count, (rule, counts)


def test_make_replicate_trains_the_second_set_of_seeds_on_the_same_backbones(tmp_path):
    """`make run` trains seeds 0-2, `make replicate` (``--config replicate=true``) 3-5 as well, with
    the four backbones pretrained once (with the first seed) for both sets."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    raw = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    raw["results"] = str(tmp_path / "results" / "mini")  # no run of this checkout counts as done
    (tmp_path / "config" / "mini.yaml").write_text(yaml.safe_dump(raw))
    preset = str(tmp_path / "config" / "mini.yaml")
    for extra, seeds in (((), 3), (("--config", "replicate=true"), 6)):
        result = snakemake("-n", "--configfile", preset, *extra)
        assert result.returncode == 0, result.stderr[-3000:]
        counts = job_counts(result.stdout)
        assert (counts["train"], counts["run_record"], counts["pretrain"]) == (15 * seeds, 15 * seeds, 4)
        assert all(f"seed{seed}/" in result.stdout for seed in range(seeds))
        assert f"seed{seeds}/" not in result.stdout
    # the second set starts from the very backbones of the first (pretrained with seed 0)
    replicating = matrix.load_preset(preset, raw={**raw, "replicate": True})
    for backbone, pretraining in matrix.pretrain_jobs(replicating):
        assert matrix.pretrain_config(replicating, backbone, pretraining).seed == 0
        assert matrix.pretrain_config_json(replicating, backbone, pretraining) == matrix.pretrain_config_json(
            matrix.load_preset(preset, raw=raw), backbone, pretraining
        )
    make = subprocess.run(["make", "-n", "replicate", "PRESET=mini"], cwd=ROOT, capture_output=True, text=True)
    assert "--configfile config/mini.yaml --config replicate=true" in make.stdout
    with pytest.raises(ConfigError, match=r"mini.yaml: replication_seeds: \[\] should be non-empty"):  # the schema's
        matrix.load_preset(preset, raw={**raw, "replicate": True, "replication_seeds": []})
    without = {key: value for key, value in raw.items() if key != "replication_seeds"}
    with pytest.raises(
        ConfigError, match="replicate asks for the replication seeds, but the preset names no replication_seeds"
    ):
        matrix.load_preset(preset, raw={**without, "replicate": True})
    with pytest.raises(ConfigError, match=r"replication_seeds \[2\] are also in seeds"):
        matrix.load_preset(preset, raw={**raw, "replication_seeds": [2, 3]})


DETECTOR_KEYS = (
    "augment, mixup_off_last_epochs, model, optim, pretrained, random_shapes, resources, run, same_as, tricks"
)


def test_a_typo_in_the_preset_is_named(tmp_path):
    raw = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    raw["detectors"]["yolov3"]["mixup_of_last_epochs"] = 3
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = snakemake("-n", "--configfile", str(path))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{path}: unknown key 'detectors.yolov3.mixup_of_last_epochs' (known: {DETECTOR_KEYS})" in output, output
    assert "additionalProperties" not in output  # not the schema's dump


def test_a_misspelt_preset_key_on_the_command_line_is_named_on_one_line():
    """``--config 'seedz=[0]'``: named against the schema's keys before its validation dumps the schema."""
    result = snakemake("-n", "--config", "seedz=[0]")
    known = ", ".join(sorted(yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())["properties"]))
    output = result.stdout + result.stderr
    assert result.returncode != 0 and f"config/mini.yaml: unknown key 'seedz' (known: {known})" in output, output
    assert "additionalProperties" not in output and "controls, dataset, detectors, figures, leave_out, name" in known


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda raw: raw.update(seedz=[0]),
            "unknown key 'seedz' (known: budgets, controls, dataset, detectors, figures, ",
        ),
        (
            lambda raw: raw["dataset"]["synth"].update(num_imgs=3),
            "unknown key 'dataset.synth.num_imgs' (known: class_names, classes, cls_image_size, ",
        ),
        (
            lambda raw: raw["detectors"].update(yolov4={}),
            "unknown key 'detectors.yolov4' (known: frcnn_r101, frcnn_r50, yolov3)",
        ),
        (
            lambda raw: raw["detectors"]["frcnn_r50"].update(mixup_of_last_epochs=3),
            f"unknown key 'detectors.frcnn_r50.mixup_of_last_epochs' (known: {DETECTOR_KEYS})",
        ),
        (
            lambda raw: raw["detectors"]["frcnn_r50"]["resources"].update(gpu=1),
            "unknown key 'detectors.frcnn_r50.resources.gpu' (known: cpus, gpus, mem_mb, runtime)",
        ),
    ],
)
def test_a_misspelt_preset_key_is_named_with_the_known_ones(change, message):
    raw = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    raw["detectors"]["frcnn_r50"].setdefault("resources", {})
    change(raw)
    with pytest.raises(ConfigError) as raised:
        matrix.load_preset(ROOT / "config" / "mini.yaml", raw=raw)
    assert str(raised.value).startswith(f"{ROOT / 'config' / 'mini.yaml'}: {message}"), raised.value


@pytest.mark.parametrize(
    ("table", "where", "tricks", "message"),
    [
        (
            "table3",
            ("rows", 2, None),
            {"lr_schedul": "cosine"},
            "table3: row '+ cosine lr schedule': unknown trick key 'lr_schedul' (known: augmentation, batchnorm, "
            "label_smoothing, lr_schedule, mixup, random_shapes)",
        ),
        (
            "table4",
            ("rows", 0, "bof"),
            {"lr_schedule": "cosine", "mixup": {"mode": "fixed", "weigthed": False}},
            "table4: row 'Faster-RCNN R50' bof: unknown trick key 'mixup.weigthed' (known: alpha, beta, loss_scale, "
            "mode, off_last_epochs, weighted)",
        ),
        (
            "table6",
            ("columns", 1, None),
            {"mixup": {"mode": "fixed"}, "label_smothing": True},
            "table6: column '+Mixup FRCNN': unknown trick key 'label_smothing' (known: augmentation, batchnorm, ",
        ),
    ],
)
def test_a_misspelt_trick_key_in_the_tables_is_named(tmp_path, table, where, tricks, message):
    """Today's slug leaves an unknown key out, so the row collided with the one it misspells, unnamed."""
    tables = yaml.safe_load((ROOT / "config" / "tables.yaml").read_text())
    key, index, side = where
    entry = tables[table][key][index]
    (entry[side] if side else entry)["tricks"] = tricks
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump(tables))
    path = tmp_path / "mini.yaml"
    path.write_text((ROOT / "config" / "mini.yaml").read_text())
    with pytest.raises(ConfigError) as raised:
        matrix.load_preset(path)
    assert str(raised.value).startswith(f"{(tmp_path / 'tables.yaml').resolve()}: {message}"), raised.value


def test_report_json_of_the_pipeline_matches_the_preset_file():
    """render_report hands `bof report --preset-json` the preset as Snakemake holds it: parsed
    again, it is the preset the Snakefile loaded (its --config overrides too)."""
    from bof.pipeline.preset import read_preset

    config = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text()) | {"seeds": [4, 5]}
    preset = matrix.load_preset(ROOT / "config" / "smoke.yaml", raw=config)
    data = json.loads(json.dumps({"path": str(preset.path), "config": config, "tables": str(preset.tables_path)}))
    round_trip = read_preset(data["path"], data["config"], tables=data["tables"], schema=None)  # as `bof report` does
    assert round_trip == preset and round_trip.seeds == [4, 5]
    assert round_trip.tables["table1"].rows[0].name == "baseline"


def test_report_json_without_its_keys_is_refused_in_one_line():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "bof", "report", "--preset-json", '{"path": "config/smoke.yaml"}', "--render-to", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.strip() == (
        "bof report: error: --preset-json needs an object with 'path', 'config' and 'tables' (what the pipeline passes)"
    )


def test_the_preset_is_parsed_once_into_frozen_typed_objects():
    from bof.pipeline.preset import BackboneSpec, DetectorSpec, PairEntry, ResourceRequest, TableRow

    preset = matrix.load_preset(ROOT / "config" / "mini.yaml")
    assert set(preset.detectors) == {"yolov3", "frcnn_r50", "frcnn_r101"}
    assert all(isinstance(spec, DetectorSpec) for spec in preset.detectors.values())
    assert preset.detectors["frcnn_r101"] == DetectorSpec(same_as="frcnn_r50")
    r50 = preset.detectors["frcnn_r50"]
    assert (r50.optim["lr"], r50.mixup_off_last_epochs, r50.pretrained, r50.resources) == (
        0.04,
        2,
        "pipeline",
        ResourceRequest(),
    )
    assert preset.pretrain["small_resnet"] == BackboneSpec(
        {"crop_scale_min": 0.35, "width": 0.25, "image_size": 48, "epochs": 100, "batch_size": 64, "lr": 0.05}
        | {"warmup_epochs": 1, "workers": 0},
        {},
    )
    assert (preset.run_seeds, preset.replication_seeds, preset.replicate) == ((0, 1, 2), (3, 4, 5), False)
    assert (preset.dataset.kind, preset.dataset.train, preset.threads, preset.run_controls) == (
        "synth",
        ("2007:trainval",),
        1,
        False,
    )
    # every entry's pretraining resolved once, from `pretrain_mixup` or `pretraining`
    table4, table6 = preset.tables["table4"], preset.tables["table6"]
    assert [row.name for row in table4.rows] == ["Faster-RCNN R50", "Faster-RCNN R101", "YOLOv3"]
    assert all(isinstance(row, TableRow) for table in preset.tables.values() for row in table.rows)
    assert table4.rows[0].baseline == PairEntry({}, "plain", 36.5)
    assert (table4.rows[0].bof.pretraining, table4.rows[0].bof.paper) == ("mixup", 37.6)
    assert [row.pretraining for row in table6.rows] == ["plain", "mixup"]
    assert [(c.pretraining, c.columns) for c in table6.controls] == [("plain-long", ("-Mixup FRCNN",))]
    assert preset.tables["table3"].row("+ cosine lr schedule").tricks == {"lr_schedule": "cosine"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.results = "elsewhere"
    with pytest.raises(dataclasses.FrozenInstanceError):
        table4.rows[0].pretraining = "mixup"
    replicating = preset.replicating()
    assert replicating.seeds == [0, 1, 2, 3, 4, 5] and preset.seeds == [0, 1, 2]


def test_a_bad_pretraining_in_the_tables_still_fails_naming_the_choices(tmp_path):
    tables = yaml.safe_load((ROOT / "config" / "tables.yaml").read_text())
    tables["table6"]["controls"][0]["pretraining"] = "longer"
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump(tables))
    path = tmp_path / "mini.yaml"
    path.write_text((ROOT / "config" / "mini.yaml").read_text())
    with pytest.raises(ConfigError) as error:
        matrix.load_preset(path)
    assert str(error.value) == (
        f"{tmp_path / 'tables.yaml'}: table6: pretraining 'longer' is not one of ['plain', 'mixup', 'plain-long']"
    )


def test_a_table_without_a_required_key_names_the_file_and_the_table(tmp_path):
    tables = yaml.safe_load((ROOT / "config" / "tables.yaml").read_text())
    del tables["table3"]["title"]
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump(tables))
    path = tmp_path / "mini.yaml"
    path.write_text((ROOT / "config" / "mini.yaml").read_text())
    with pytest.raises(ConfigError) as error:
        matrix.load_preset(path)
    assert str(error.value) == f"{tmp_path / 'tables.yaml'}: table3: a table entry has no 'title'"


def test_replicating_a_preset_without_replication_seeds_fails_naming_the_file():
    preset = matrix.load_preset(ROOT / "config" / "smoke.yaml")
    with pytest.raises(ConfigError) as error:
        preset.replicating()
    assert str(error.value) == (
        f"{preset.path}: replicate asks for the replication seeds, but the preset names no replication_seeds"
    )


def test_the_mixup_twin_gets_its_own_recipe():
    """GluonCV's darknet53-mixup.sh trained 200 epochs, darknet53.sh 120; nothing else differs."""
    preset = matrix.load_preset(ROOT / "config" / "voc.yaml")
    plain = matrix.pretrain_config(preset, "darknet53", "plain")
    mixed = matrix.pretrain_config(preset, "darknet53", "mixup")
    assert (plain.epochs, mixed.epochs) == (120, 200) and not plain.mixup and mixed.mixup
    assert {k: v for k, v in vars(plain).items() if k not in ("epochs", "mixup")} == {
        k: v for k, v in vars(mixed).items() if k not in ("epochs", "mixup")
    }
    assert (plain.crop_scale_min, plain.color_jitter, plain.lighting, plain.decay_norm_and_bias) == (
        0.08,
        0.4,
        0.1,
        False,
    )


def test_kmeans_anchors_are_a_data_output_named_by_the_training_config():
    preset = matrix.load_preset(ROOT / "config" / "smoke.yaml")
    assert matrix.anchors_targets(preset) == ["results/smoke/data/anchors_yolov3.json"]
    job = next(j for j in matrix.jobs(preset) if j.detector == "yolov3")
    assert matrix.train_config(preset, job).model.anchors == "results/smoke/data/anchors_yolov3.json"
    assert matrix.anchors_input(preset, job) == ["results/smoke/data/anchors_yolov3.json"]
    assert matrix.anchors_size(preset, "yolov3") == 64
    frcnn = next(j for j in matrix.jobs(preset) if j.detector != "yolov3")
    assert matrix.anchors_input(preset, frcnn) == []


def test_jobs_ask_for_one_node_and_share_its_cpus(tmp_path):
    """The paper presets' trainings: one process per GPU on one node, data-loader workers and
    threads within the CPUs asked for; a retry asks for more memory and time."""
    preset = matrix.load_preset(ROOT / "config" / "voc.yaml")
    yolo = matrix.training_resources(preset, "yolov3")
    assert (yolo.gpus, yolo.processes, yolo.workers) == (8, 8, 6)
    assert yolo.processes * (yolo.workers + yolo.threads_per_process) <= yolo.cpus
    dry = snakemake("-n", "-p", "--configfile", "config/voc.yaml", "--directory", str(ROOT))
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "-m torch.distributed.run --standalone --nproc_per_node 8 -m bof train" in dry.stdout
    assert f"OMP_NUM_THREADS={yolo.threads_per_process} " in dry.stdout
    raw = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    raw["detectors"]["yolov3"]["run"]["workers"] = 4  # 5 processes' worth on a 1-CPU job
    path = tmp_path / "greedy.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        ConfigError, match=r"detectors.yolov3: 1 process\(es\) with 4 data-loader workers each need 5 CPUs"
    ):
        matrix.load_preset(path, default_tables=ROOT / "config" / "tables.yaml")


def test_the_coco_presets_yolov3_detects_at_608():
    """Table 5's COCO YOLOv3 numbers are at 608 (the paper): the coco preset's model, built from
    its training config (input 416), feeds the network 608 x 608 images at test time and maps
    the boxes back to the image. The width is shrunk so that the forward pass is cheap."""
    import dataclasses

    import torch

    from bof.models import build_detector

    preset = matrix.load_preset(ROOT / "config" / "coco.yaml")
    job = next(job for job in matrix.jobs(preset) if job.detector == "yolov3")
    config = matrix.train_config(preset, job)
    assert (config.model.input_size, config.model.test_size) == (416, 608)
    small = dataclasses.replace(config.model, width=0.125, depth=0.34, pretrained=None)
    model = build_detector(dataclasses.replace(config, model=small), num_classes=80).eval()
    seen = []
    model.raw_outputs = lambda batch, inner=model.raw_outputs: seen.append(batch.shape) or inner(batch)
    # one detection at a known place of the 608 x 608 input, to follow it back into the image
    model.postprocess = lambda boxes, scores: {
        "boxes": torch.tensor([[76.0, 152.0, 608.0, 304.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([0]),
    }
    with torch.no_grad():
        (detections,) = model.detect([torch.rand(3, 120, 200, generator=torch.Generator().manual_seed(0))])
    assert seen == [torch.Size([1, 3, 608, 608])]
    assert detections["boxes"].tolist() == [pytest.approx([76 * 200 / 608, 152 * 120 / 608, 200.0, 60.0])]


def test_a_bad_trick_value_in_a_preset_names_the_file_and_the_detector(tmp_path):
    raw = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    raw["detectors"]["frcnn_r50"]["tricks"]["mixup"] = {"mode": "beta", "alpha": -1.0}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    shutil.copy(ROOT / "config" / "tables.yaml", tmp_path / "tables.yaml")
    with pytest.raises(ConfigError) as error:
        matrix.jobs(matrix.load_preset(path))
    assert str(error.value) == (f"{path}: frcnn_r50: tricks.mixup: mixup beta parameters must be > 0, got (-1.0, 1.5)")
