# The report reads eval/ and figure_data/ only (what git ships), never the runs or the dataset.
# All or nothing, in two steps: render_report writes the whole set into a staging folder, so a
# damaged input stops it there; only then does the report job (whose outputs Snakemake deletes
# before it runs) copy the set into place.
rule render_report:
    input:
        matrix.metric_targets(PRESET),
        matrix.figure_data_targets(PRESET),
        matrix.record_targets(PRESET),
    output:
        # the set's first file stands for the folder (a directory() output would leave Snakemake's
        # timestamp file among the shipped results)
        temp(f"{RESULTS}/.report_staging/REPORT.md"),
    log:
        f"{RESULTS}/logs/render_report.log",
    benchmark:
        f"{RESULTS}/benchmarks/render_report.tsv"
    params:
        # the preset as Snakemake holds it (the file with its --config overrides) and the tables it
        # was read with: the report parses it as the Snakefile did
        preset=json.dumps(
            {
                "path": str(PRESET.path),
                "config": config,
                "tables": str(PRESET.tables_path),
            }
        ),
        # the definitions themselves: an edited table makes the report out of date
        tables=Path(PRESET.tables_path).read_text(),
        staging=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "rm -rf {params.staging:q} && {BOF} report --preset-json {params.preset:q} --render-to {params.staging:q} > {log:q} 2>&1"


# Its files are outputs with captions, so `snakemake --report report.html` makes one
# self-contained page: the DAG, the runtimes, the config, Tables 1-6 and Figures 1-9.
rule report:
    input:
        staging=rules.render_report.output,
        # again here: a changed metrics file must make the report out of date, and the staging
        # folder, temporary, cannot carry that
        results=rules.render_report.input,
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
                caption=f"../report/{PRESET.tables[name].base or name}.rst",
                category="Tables",
            )
            for name in PRESET.tables
        ],
        [
            f"{RESULTS}/tables/{name}.{kind}"
            for name in PRESET.tables
            for kind in ("md", "tex")
        ],
        f"{RESULTS}/val_curves.json",
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
        # the settings too (a preset or tables change redoes the report), for the same reason
        preset=rules.render_report.params.preset,
        staging=lambda wildcards, input: os.path.dirname(input.staging[0]),
        results=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "{BOF} report --install-from {params.staging:q} --results {params.results:q} > {log:q} 2>&1"
