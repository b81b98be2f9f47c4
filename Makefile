# Each target first runs the idempotent set-up (seconds when nothing changed).
# PANOPTIC_OCR_ENV=current uses the python on PATH instead of ./.venv (see README).
ifeq ($(PANOPTIC_OCR_ENV),current)
PY ?= python3
else
PY ?= .venv/bin/python
endif
QUICKSTART_CONFIG ?= configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml
PANOPTIC_CONFIG ?= configs/toy_scenes/panoptic_fpn_ocr_R18_toy_scenes_600it.yaml

.PHONY: setup quickstart panoptic-quickstart test test-slow test-all
setup:
	bash tools/setup_env.sh

quickstart: setup
	$(PY) train_net.py --config-file $(QUICKSTART_CONFIG)

# Panoptic-FPN + OCR on the toy scenes (CPU, under 15 minutes): PQ, PQ-Th, PQ-St, mIoU, AP.
panoptic-quickstart: setup
	$(PY) train_net.py --config-file $(PANOPTIC_CONFIG)

# Lint (ruff.toml: pyflakes, pycodestyle at 100 columns, import order), then the tests on
# TEST_WORKERS processes (pytest-xdist; 1 runs them in this process): `test` all but the
# end-to-end tests marked slow (tests/conftest.py SLOW_TESTS), `test-slow` those, `test-all`
# everything in one run. CI (.ci/run) runs test, then test-slow.
# A worker that dies (a native crash) fails its test by name and is not replaced: pytest-xdist
# 3.8 could wait for ever after replacing one (CI was stopped at its time limit that way).
TEST_WORKERS ?= 2
PYTEST = $(PY) -m pytest $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile \
	--max-worker-restart 0)
test: setup
	$(PY) -m ruff check .
	$(PYTEST) -m "not slow"

# One process per test file, so that no native library's state outlives its file: in a single
# process a later file once died of a segfault (OpenVINO's freed signal stack, since fixed in
# panoptic_ocr/export/signal_stack.py); every file passes on its own.
SLOW_FILES_CMD = import sys; sys.path.insert(0, "tests"); from conftest import SLOW_TESTS; \
	print(" ".join(sorted({t.split("::")[0] for t in SLOW_TESTS})))
test-slow: setup
	@files=$$($(PY) -c '$(SLOW_FILES_CMD)' 2>/dev/null); \
	test -n "$$files" || { echo "test-slow: could not list tests/conftest.py SLOW_TESTS"; exit 1; }; \
	for f in $$files; do echo "== $$f"; $(PY) -m pytest -q -m slow $$f || exit 1; done

test-all: setup
	$(PY) -m ruff check .
	$(PYTEST)
