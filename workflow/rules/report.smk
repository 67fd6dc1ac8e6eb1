rule report:
    input:
        matrix.metric_targets(PRESET),
        matrix.figure_data_targets(PRESET),
        [f"{matrix.run_dir(PRESET, j)}/run.json" for j in matrix.jobs(PRESET)],
        DATA_CHECKS,
    output:
        f"{RESULTS}/REPORT.md",
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    conda:
        "../../environment.yml"
    params:
        preset=json.dumps({"raw": PRESET.raw, "tables": PRESET.tables}),
    shell:
        "bof report --preset-json {params.preset:q} > {log:q} 2>&1"
