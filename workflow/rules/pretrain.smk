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
        variant="plain|mixup",
    conda:
        "../../environment.yml"
    threads: matrix.job_threads(PRESET)
    resources:
        gpu=0,
    params:
        config=lambda wildcards: matrix.pretrain_config_json(
            PRESET, wildcards.backbone, wildcards.variant == "mixup"
        ),
        out=lambda wildcards, output: os.path.dirname(output[0]),
        launcher=lambda wildcards, resources: matrix.launcher(resources.gpu),
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} pretrain --config-json {params.config:q} --out {params.out:q} --quiet > {log:q} 2>&1"


rule pretrain_all:
    input:
        [
            f"{matrix.pretrain_dir(PRESET, backbone, mixup)}/backbone.pt"
            for backbone, mixup in matrix.pretrain_jobs(PRESET)
        ],
