# The report reads eval/ and figure_data/ only (what git ships), never the runs or the dataset.
# Its files are outputs with captions, so `snakemake --report report.html` makes one
# self-contained page: the DAG, the runtimes, the config, Tables 1-6 and Figures 1-9.
rule report:
    input:
        matrix.metric_targets(PRESET),
        matrix.figure_data_targets(PRESET),
        matrix.record_targets(PRESET),
    output:
        report(
            f"{RESULTS}/REPORT.md", caption="../report/report.rst", category="Report"
        ),
        report(
            f"{RESULTS}/summary.json",
            caption="../report/summary.rst",
            category="Report",
        ),
        [
            report(
                f"{RESULTS}/tables/{name}.csv",
                caption=f"../report/{name}.rst",
                category="Tables",
            )
            for name in PRESET.tables
        ],
        [
            report(
                f"{RESULTS}/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in matrix.report_figures(PRESET)
        ],
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    params:
        preset=json.dumps(
            {"path": str(PRESET.path), "raw": PRESET.raw, "tables": PRESET.tables}
        ),
    shell:
        "{BOF} report --preset-json {params.preset:q} > {log:q} 2>&1"
