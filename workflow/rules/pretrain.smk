rule pretrain:
    input:
        DATA_CHECKS,
        # ImageNet, which cannot be fetched: missing, the DAG stops here in one line
        lambda wildcards: matrix.imagenet_input(PRESET, wildcards.backbone),
        # the GPUs it asks for, where it runs on this machine: too few stop the DAG here
        lambda wildcards: matrix.gpu_input(
            PRESET, "pretrain", wildcards, matrix.gpus_here(workflow)
        ),
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
        # the retry's number, for bof to stop at once after a first attempt that failed on its input
        attempt=lambda wildcards, attempt: attempt,
    params:
        omp=matrix.job_resource(PRESET, "pretrain", "threads_per_process"),
        config=lambda wildcards: matrix.pretrain_config_json(
            PRESET, wildcards.backbone, wildcards.variant
        ),
        out=lambda wildcards, output: os.path.dirname(output[0]),
        launcher=lambda wildcards, resources: matrix.launcher(resources.gpu),
    shell:
        "OMP_NUM_THREADS={params.omp} {params.launcher} pretrain --config-json {params.config:q} --out {params.out:q} --quiet --attempt {resources.attempt} {RESTART} > {log:q} 2>&1"


rule pretrain_all:
    input:
        [
            f"{matrix.pretrain_dir(PRESET, backbone, pretraining)}/backbone.pt"
            for backbone, pretraining in matrix.pretrain_jobs(PRESET)
        ],


# The published ImageNet weights (a detector with `pretrained: imagenet`) into torch.hub's cache,
# checksum verified; where Snakemake runs (the head node has the network the jobs may lack).
rule published_backbone:
    output:
        os.path.join(matrix.published_dir(), "{file}"),
    log:
        f"{RESULTS}/logs/published_backbone_{{file}}.log",
    wildcard_constraints:
        file="|".join(re.escape(name) for name in matrix.PUBLISHED_FILES.values()),
    localrule: True
    params:
        backbone=lambda wildcards: matrix.published_backbone(wildcards.file),
    shell:
        "{BOF} fetch-backbone {params.backbone} --out {output:q} > {log:q} 2>&1"
