rule train:
    input:
        DATA_CHECKS,
        lambda wildcards: matrix.pretrained_input(PRESET, matrix.Job.of(wildcards)),
        lambda wildcards: matrix.anchors_input(PRESET, matrix.Job.of(wildcards)),
    output:
        model=f"{RESULTS}/runs/{{detector}}/{{combo}}/seed{{seed}}/model.pt",
        curve=f"{RESULTS}/runs/{{detector}}/{{combo}}/seed{{seed}}/val_curve.json",
        run=f"{RESULTS}/runs/{{detector}}/{{combo}}/seed{{seed}}/run.json",
        predictions=f"{RESULTS}/runs/{{detector}}/{{combo}}/seed{{seed}}/predictions/coco_results.json",
    log:
        f"{RESULTS}/logs/train/{{detector}}/{{combo}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{detector}}/{{combo}}_seed{{seed}}.tsv"
    wildcard_constraints:
        detector="[a-z0-9_]+",
        combo="[A-Za-z0-9_.-]+",
        seed="[0-9]+",
    conda:
        "../../environment.yml"
    threads: matrix.job_threads(PRESET)
    resources:
        gpu=lambda wildcards: matrix.gpus(PRESET, wildcards.detector),
    params:
        config=lambda wildcards: matrix.train_config_json(
            PRESET, matrix.Job.of(wildcards)
        ),
        out=lambda wildcards, output: os.path.dirname(output.model),
        launcher=lambda wildcards, resources: matrix.launcher(resources.gpu),
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} train --config-json {params.config:q} --out {params.out:q} --quiet > {log:q} 2>&1"


rule train_all:
    input:
        [f"{matrix.run_dir(PRESET, j)}/model.pt" for j in matrix.jobs(PRESET)],
