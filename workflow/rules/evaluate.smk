EVAL = matrix.eval_pattern(PRESET)
# A training writes its final validation's detections (what `bof predict` writes) to
# {RUN}/predictions; the evaluations score those files with the official tools' rules. Every
# file they read is an input (a deleted one reruns its training), checked against the SHA256SUMS
# the training wrote with them (a cut or edited one stops the evaluation, naming it).


rule evaluate_voc:
    input:
        results=matrix.voc_results_files(PRESET, f"{RUN}/predictions"),
        checksums=f"{RUN}/predictions/SHA256SUMS",
    output:
        f"{EVAL}/voc07.json",
    log:
        f"{RESULTS}/logs/evaluate/{{detector}}/{{combo}}_seed{{seed}}_voc07.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{detector}}/{{combo}}_seed{{seed}}_voc07.tsv"
    params:
        devkit=(
            matrix.voc_evaluation_arguments(PRESET)
            if PRESET.dataset.kind != "coco"
            else ""
        ),
        results=lambda wildcards, input: os.path.dirname(input.results[0]),
    shell:
        "{BOF} evaluate voc {params.devkit} --results {params.results:q} --checksums {input.checksums:q} --metric voc07 --out {output:q} > {log:q} 2>&1"


rule evaluate_coco:
    input:
        results=f"{RUN}/predictions/coco_results.json",
        checksums=f"{RUN}/predictions/SHA256SUMS",
        annotations=matrix.val_annotations_input(PRESET),
    output:
        f"{EVAL}/coco.json",
    log:
        f"{RESULTS}/logs/evaluate/{{detector}}/{{combo}}_seed{{seed}}_coco.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{detector}}/{{combo}}_seed{{seed}}_coco.tsv"
    params:
        annotations=lambda wildcards, input: matrix.val_annotations_from_input(
            PRESET, input.annotations
        ),
    shell:
        "{BOF} evaluate coco --annotations {params.annotations:q} --results {input.results:q} --checksums {input.checksums:q} --out {output:q} > {log:q} 2>&1"


rule figure_data:
    input:
        lambda wildcards: matrix.figure_models(PRESET, wildcards.figure),
    output:
        f"{RESULTS}/figure_data/{{figure}}.json",
    log:
        f"{RESULTS}/logs/figure_data_{{figure}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figure_data_{{figure}}.tsv"
    wildcard_constraints:
        figure="figure1|figure5|figure7",
    threads: 2
    params:
        examples=matrix.figure_examples(PRESET),
    shell:
        "OMP_NUM_THREADS={threads} {BOF} figure-data {wildcards.figure} --models {input:q} --count {params.examples} --out {output:q} > {log:q} 2>&1"


# Figures 2-3 show two training images: kept in their JSON, so the report needs no dataset.
rule figure_data_training_pair:
    input:
        DATA_CHECKS,
    output:
        f"{RESULTS}/figure_data/figure2.json",
    log:
        f"{RESULTS}/logs/figure_data_figure2.log",
    benchmark:
        f"{RESULTS}/benchmarks/figure_data_figure2.tsv"
    params:
        data=json.dumps(matrix.data_section(PRESET)),
    shell:
        "{BOF} figure-data figure2 --data-json {params.data:q} --out {output:q} > {log:q} 2>&1"


# A run's provenance and validation curve beside its metrics: eval/ then holds everything the
# report reads of a run, and is what git ships (the run folder keeps the checkpoints).
rule run_record:
    input:
        run=f"{RUN}/run.json",
        curve=f"{RUN}/val_curve.json",
    output:
        run=f"{EVAL}/run.json",
        curve=f"{EVAL}/val_curve.json",
    log:
        f"{RESULTS}/logs/evaluate/{{detector}}/{{combo}}_seed{{seed}}_record.log",
    shell:
        "(cp {input.run:q} {output.run:q} && cp {input.curve:q} {output.curve:q}) > {log:q} 2>&1"


rule evaluate_all:
    input:
        matrix.metric_targets(PRESET),
        matrix.figure_data_targets(PRESET),
        matrix.record_targets(PRESET),
