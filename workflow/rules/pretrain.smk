rule pretrain:
    input:
        DATA_CHECKS,
    output:
        f"{RESULTS}/pretrain/{{backbone}}/{{variant}}/backbone.pt",
    log:
        f"{RESULTS}/logs/pretrain/{{backbone}}_{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretrain/{{backbone}}_{{variant}}.tsv"
    wildcard_constraints:
        backbone="darknet53|resnet50|resnet101|small_resnet",
        variant="plain|mixup|plain-long",
    threads: matrix.job_resource(PRESET, "pretrain", "cpus")
    resources:
        gpu=matrix.job_resource(PRESET, "pretrain", "gpus"),
        nodes=1,
        cpus_per_task=matrix.job_resource(PRESET, "pretrain", "cpus"),
        mem_mb=matrix.job_resource(PRESET, "pretrain", "mem_mb", per_attempt=True),
        runtime=matrix.job_resource(PRESET, "pretrain", "runtime", per_attempt=True),
    params:
        omp=matrix.job_resource(PRESET, "pretrain", "threads_per_process"),
        config=lambda wildcards: matrix.pretrain_config_json(
            PRESET, wildcards.backbone, wildcards.variant
        ),
        out=lambda wildcards, output: os.path.dirname(output[0]),
        launcher=lambda wildcards, resources: matrix.launcher(resources.gpu),
    shell:
        "OMP_NUM_THREADS={params.omp} {params.launcher} pretrain --config-json {params.config:q} --out {params.out:q} --quiet {RESTART} > {log:q} 2>&1"


rule pretrain_all:
    input:
        [
            f"{matrix.pretrain_dir(PRESET, backbone, pretraining)}/backbone.pt"
            for backbone, pretraining in matrix.pretrain_jobs(PRESET)
        ],
