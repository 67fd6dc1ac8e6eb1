# The bof pipeline: dataset (synthesis or download) -> backbone pretraining +-mixup ->
# detector training, one job per (detector, trick combination, seed) -> prediction and
# evaluation -> Tables 1-6 and Figures 2-9.
#   snakemake --cores 2                                  # the mini preset (default)
#   snakemake --cores 2 --configfile config/smoke.yaml   # any preset of config/
#   snakemake --profile profiles/slurm --configfile config/voc.yaml
# The logic lives in the bof package (bof.pipeline.matrix); the rules only wire it.
import json
import os
import re
import sys
from pathlib import Path

from snakemake.utils import validate

from bof.pipeline import matrix
from bof.pipeline.preset import check_keys

if not config:  # no --configfile given: the default main job

    configfile: "config/mini.yaml"


# `--config retrain=true` (with --forcerun): start the forced trainings and pretrainings over
# instead of resuming their checkpoints (which are set aside, not deleted).
RESTART = "--restart" if config.pop("retrain", False) else ""
# `--config replicate=true` (make replicate): train the preset's replication_seeds as well.
if "replicate" in config:
    config["replicate"] = str(config["replicate"]).lower() in ("true", "1", "yes")

# errors name the preset file given (--configfile), or the default one
PRESET_FILE = Path(
    workflow.configfiles[-1] if workflow.configfiles else "config/mini.yaml"
)
SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
# a misspelt key on one line, before the schema's validation prints the whole schema for it
check_keys(config, PRESET_FILE, SCHEMA)
validate(config, str(SCHEMA))


report: "workflow/report/workflow.rst"


PRESET = matrix.load_preset(
    PRESET_FILE,
    raw=config,
    default_tables=Path(workflow.basedir) / "config" / "tables.yaml",
    schema=None,  # checked above
)
# what the preset needs from outside: a writable results folder (stop here, before any job, in one
# line), published weights bof cannot fetch itself (said; their job fails saying the same), and
# ImageNet where a pretraining is in the DAG and the GPUs a job asks for of this machine when it
# runs here (the rules' inputs, asked as the DAG is built)
if matrix.preflight(PRESET):
    raise matrix.ConfigError("\n".join(matrix.preflight(PRESET)))
for line in matrix.published_missing(PRESET):
    print(f"bof: {line}", file=sys.stderr)


RESULTS = PRESET.results
DATA = matrix.data_root(PRESET)
# a training's folder, with {detector}, {combo} and {seed} as wildcards
RUN = matrix.run_pattern(PRESET)
# `python -m bof` with Snakemake's own interpreter: no PATH needed
BOF = matrix.launcher()


# The report is seconds of work: on a cluster it runs where Snakemake runs, not as a job of the
# queue (downloads too, which need the internet: workflow/rules/data.smk).
localrules:
    all,
    render_report,
    report,
    run_record,


include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# The metrics are listed beside the report so that a combination added to config/tables.yaml
# is a missing input here: Snakemake does not look for missing inputs behind an existing
# REPORT.md, and would call the workflow up to date.
rule all:
    default_target: True
    input:
        f"{RESULTS}/REPORT.md",
        rules.evaluate_all.input,
