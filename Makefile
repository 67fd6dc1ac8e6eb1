# One entry point. `make run` and `make test` work on a fresh machine with Python 3.11:
# they create .venv when it is missing and install the project into it first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bof-installed

.PHONY: setup run replicate status pipeline figures ship pull peer test lint clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

PRESET ?= mini
CORES ?= 2
ENV := PATH="$(CURDIR)/$(BIN):$$PATH"
SNAKEMAKE := $(ENV) $(BIN)/snakemake --cores $(CORES) --configfile config/$(PRESET).yaml

# The main job: the stages of dvc.yaml (data, pretrain, train, evaluate, report) of one preset
# (report@mini and the stages before it), each a Snakemake target; outputs land in results/mini/
# and DVC's cache. Tracked files that change: the preset's shipped results (results/<preset>/ less
# what .gitignore leaves to DVC); it also writes dvc.lock, which this repository does not track.
# While it runs, `bof status` prints every STATUS_EVERY seconds how many jobs are done, which
# are running (and how far) and an estimate of the time left (`make status` prints it once).
STATUS_EVERY ?= 120
run: setup
	@$(BIN)/bof status --preset config/$(PRESET).yaml --cores $(CORES) --watch $(STATUS_EVERY) & watcher=$$!; \
	$(ENV) $(BIN)/dvc repro report@$(PRESET); code=$$?; kill $$watcher 2> /dev/null; exit $$code

# After `make run`: the preset's second, independent set of seeds (`replication_seeds`; ~1 h 40 min
# more for mini: 45 trainings, no pretraining), the same jobs with other seeds, on the same data and backbones. The report then
# pools both sets and calls a verdict the two sets disagree on "not replicated". Snakemake runs it
# (as `make pipeline` does), not DVC. A later `make run` lets DVC clear eval/ and rebuilds its own
# three seeds' part; `make replicate` then re-evaluates the second set (its trainings are kept).
replicate: setup
	@$(BIN)/bof status --preset config/$(PRESET).yaml --cores $(CORES) --replicate --watch $(STATUS_EVERY) & watcher=$$!; \
	$(SNAKEMAKE) --config replicate=true; code=$$?; kill $$watcher 2> /dev/null; exit $$code

status: setup
	@$(BIN)/bof status --preset config/$(PRESET).yaml --cores $(CORES)

# The same pipeline without DVC (e.g. on a cluster: make pipeline PRESET=voc PROFILE=slurm).
PROFILE ?= local
pipeline: setup
	$(ENV) $(BIN)/snakemake --profile profiles/$(PROFILE) --configfile config/$(PRESET).yaml

# Tables 1-6, Figures 2-9 and REPORT.md from existing metrics, in seconds.
figures: setup
	$(ENV) $(BIN)/bof report --preset config/$(PRESET).yaml

# After `make run` and `make replicate`: check that the preset's results are complete (every run of
# both sets of seeds, every figure's data), rebuild the report from them, and stage the shipped
# results (results/<preset>/ less what .gitignore leaves to DVC) for a commit.
ship: setup
	$(ENV) $(BIN)/bof report --preset config/$(PRESET).yaml --complete
	git add --all results/$(PRESET)
	@echo "staged results/$(PRESET) ($$(git ls-files results/$(PRESET) | wc -l) files," \
		"$$(git ls-files -z results/$(PRESET) | du -ch --files0-from=- | tail -1 | cut -f1)): commit them"

# Fetch a preset's datasets and checkpoints from your DVC remote, then let Snakemake know they
# are up to date (DVC's checkout gives every file a new time, which would otherwise look like
# stale inputs). The shipped results are in git already: `make figures` needs no pull. It needs
# what this repository does not ship (README: DVC): a default DVC remote, and a dvc.lock that
# records the preset's stages (committed by the fork that ran `make run` and `dvc push`);
# without them it stops before pulling, writes nothing (DVC's own `dvc config` would write
# .dvc/tmp), and says which is missing.
DVC_REMOTE := from dvc.config import Config; print(Config(dvc_dir=".dvc")["core"].get("remote", ""))
pull: setup
	@missing=; \
	test -n "$$($(BIN)/python -c '$(DVC_REMOTE)' 2> /dev/null)" || \
		missing="$$missing\n  - a default DVC remote: dvc remote add -d NAME URL (this repository has none)"; \
	grep -qs '^  report@$(PRESET):' dvc.lock || \
		missing="$$missing\n  - a dvc.lock recording report@$(PRESET): this repository does not track dvc.lock; a fork that ran make run PRESET=$(PRESET) and dvc push commits it"; \
	if test -n "$$missing"; then \
		printf "make pull: nothing to pull for PRESET=$(PRESET), nothing changed. Missing:$$missing\n%s\n" \
			"The shipped results (results/<preset>/ in git) need no pull: make figures PRESET=mini." >&2; \
		exit 1; fi
	$(ENV) $(BIN)/dvc pull --with-deps report@$(PRESET)
	$(ENV) $(BIN)/snakemake all --touch --cores $(CORES) --configfile config/$(PRESET).yaml

# A peer on the same data (issue 27): ultralytics' YOLOv8n from scratch on the mini dataset, its own
# cosine schedule and mixup switched on alone, three seeds (benchmarks/peer_ultralytics.py). Its own
# environment: ultralytics pins opencv-python, bof the headless build (9 trainings of 48 epochs,
# 246-357 s each on 2 CPU cores, measured one at a time beside another job: about 20 min two at a time).
PEER := .venv-peer
PEER_EPOCHS ?= 48
peer: setup
	$(SNAKEMAKE) results/mini/data/check_train.json results/mini/data/check_val.json
	@test -x $(PEER)/bin/python || $(PYTHON) -m venv $(PEER)
	$(PEER)/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1 ultralytics==8.3.0
	$(PEER)/bin/python benchmarks/peer_ultralytics.py --voc data/mini/VOCdevkit/VOC2007 --out results/peer \
		--epochs $(PEER_EPOCHS) --imgsz 96 --seeds 0 1 2 --jobs $(CORES)

# Snakemake lints accepted on purpose: no conda/container directive (none could ever be run or
# tested here; environment.yml sets up the one environment every rule runs in), and rules that
# call the launcher `BOF` and the `RESTART` flag, which are not parameters of a result (as params,
# moving the venv or one `retrain=true` would rerun every job afterwards).
LINT_ACCEPTED = -e 'Specify a conda environment or container' -e 'directly uses variable BOF' \
	-e 'directly uses variable RESTART'

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/
	for preset in smoke mini budget voc coco; do \
		$(BIN)/snakemake --lint text --configfile config/$$preset.yaml > .lint.txt 2>&1; \
		grep -q "^Lints for rule\|Congratulations" .lint.txt || { cat .lint.txt; exit 1; }; \
		if grep '^ *\* ' .lint.txt | grep -v $(LINT_ACCEPTED); then cat .lint.txt; exit 1; fi; done; \
	rm -f .lint.txt

# Two pytest-xdist workers: the pipeline, DVC and SLURM tests wait on subprocesses much of the
# time; the tests sharing the DVC smoke run stay in one worker (xdist_group), so it runs once, and
# the two SLURM tests in the other, with one cluster (pytest < 9.2: tests/test_project.py checks).
test: setup lint
	$(BIN)/pytest -q -n 2 --dist loadgroup


clean-venv:
	rm -rf $(VENV)
