rule train:
    input:
        DATA_CHECKS,
        lambda wildcards: matrix.pretrained_input(PRESET, matrix.Job.of(wildcards)),
        # the GPUs it asks for, where it runs on this machine: too few stop the DAG here
        lambda wildcards: matrix.gpu_input(
            PRESET, "train", wildcards, matrix.gpus_here(workflow)
        ),
        # ancient: fetched again (same file), it makes no training out of date
        lambda wildcards: [
            ancient(path)
            for path in matrix.published_input(PRESET, matrix.Job.of(wildcards))
        ],
        lambda wildcards: matrix.anchors_input(PRESET, matrix.Job.of(wildcards)),
    output:
        model=f"{RUN}/model.pt",
        curve=f"{RUN}/val_curve.json",
        run=f"{RUN}/run.json",
        predictions=f"{RUN}/predictions/coco_results.json",
        voc_results=matrix.voc_results_files(PRESET, f"{RUN}/predictions"),
        checksums=f"{RUN}/predictions/SHA256SUMS",
    log:
        f"{RESULTS}/logs/train/{{detector}}/{{combo}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{detector}}/{{combo}}_seed{{seed}}.tsv"
    wildcard_constraints:
        detector="[a-z0-9_]+",
        combo="[A-Za-z0-9_.-]+",
        seed="[0-9]+",
    threads: matrix.job_resource(PRESET, "train", "cpus")
    resources:
        gpu=matrix.job_resource(PRESET, "train", "gpus"),
        nodes=1,
        cpus_per_task=matrix.job_resource(PRESET, "train", "cpus"),
        mem_mb=matrix.job_resource(PRESET, "train", "mem_mb", per_attempt=True),
        runtime=matrix.job_resource(PRESET, "train", "runtime", per_attempt=True),
        # the retry's number, for bof to stop at once after a first attempt that failed on its input
        attempt=lambda wildcards, attempt: attempt,
    params:
        config=lambda wildcards: matrix.train_config_json(
            PRESET, matrix.Job.of(wildcards)
        ),
        out=lambda wildcards, output: os.path.dirname(output.model),
        launcher=lambda wildcards, resources: matrix.launcher(resources.gpu),
        omp=matrix.job_resource(PRESET, "train", "threads_per_process"),
    shell:
        "OMP_NUM_THREADS={params.omp} {params.launcher} train --config-json {params.config:q} --out {params.out:q} --quiet --attempt {resources.attempt} {RESTART} > {log:q} 2>&1"


rule train_all:
    input:
        [f"{matrix.run_dir(PRESET, j)}/model.pt" for j in matrix.jobs(PRESET)],
