DATA_CHECKS = [f"{RESULTS}/data/check_train.json", f"{RESULTS}/data/check_val.json"]


if PRESET.dataset.kind == "synth":

    rule synth:
        output:
            f"{DATA}/synth.json",
        log:
            f"{RESULTS}/logs/synth.log",
        benchmark:
            f"{RESULTS}/benchmarks/synth.tsv"
        params:
            root=lambda wildcards, output: os.path.dirname(output[0]),
            options=matrix.synth_options(PRESET),
        shell:
            "{BOF} synth --out {params.root:q} --force --quiet {params.options} > {log:q} 2>&1"

    DATASET_FILES = [f"{DATA}/synth.json"]

else:

    localrules:
        download,

    rule download:
        output:
            f"{DATA}/.bof/{{archive}}.done",
        log:
            f"{RESULTS}/logs/download_{{archive}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/download_{{archive}}.tsv"
        wildcard_constraints:
            archive="[a-z0-9_]+",
        retries: 3
        params:
            root=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),
            mirror=(
                f"--mirror {PRESET.dataset.mirror}" if PRESET.dataset.mirror else ""
            ),
        shell:
            "{BOF} download --archive {wildcards.archive} --root {params.root:q} {params.mirror} --quiet > {log:q} 2>&1"

    DATASET_FILES = [
        f"{DATA}/.bof/{archive}.done" for archive in PRESET.dataset.archives
    ]


rule check_data:
    input:
        DATASET_FILES,
    output:
        f"{RESULTS}/data/check_{{split}}.json",
    log:
        f"{RESULTS}/logs/check_{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/check_{{split}}.tsv"
    wildcard_constraints:
        split="train|val",
    params:
        source=lambda wildcards: matrix.check_arguments(PRESET, wildcards.split),
    shell:
        "{BOF} data check {params.source} --json {output:q} > {log:q} 2>&1"


rule coco_val_annotations:
    input:
        DATA_CHECKS,
    output:
        f"{RESULTS}/data/instances_val.json",
    log:
        f"{RESULTS}/logs/coco_val_annotations.log",
    benchmark:
        f"{RESULTS}/benchmarks/coco_val_annotations.tsv"
    params:
        source=lambda wildcards: matrix.check_arguments(PRESET, "val"),
    shell:
        "{BOF} data to-coco {params.source} --out {output:q} > {log:q} 2>&1"


rule anchors:
    input:
        DATA_CHECKS,
    output:
        f"{RESULTS}/data/anchors_{{detector}}.json",
    log:
        f"{RESULTS}/logs/anchors_{{detector}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/anchors_{{detector}}.tsv"
    wildcard_constraints:
        detector="[a-z0-9_]+",
    params:
        source=lambda wildcards: matrix.check_arguments(PRESET, "train"),
        size=lambda wildcards: matrix.anchors_size(PRESET, wildcards.detector),
        seed=PRESET.seeds[0],
    shell:
        "{BOF} anchors {params.source} --size {params.size} --seed {params.seed} --out {output:q} > {log:q} 2>&1"


# The data stage's target: everything under results/<preset>/data, the COCO form of the
# validation split included, so that no later stage writes into the data stage's outputs.
rule data:
    input:
        DATA_CHECKS,
        matrix.anchors_targets(PRESET),
        matrix.val_annotations_input(PRESET),
