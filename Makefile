# Each target first runs the idempotent set-up (seconds when nothing changed).
# PANOPTIC_OCR_ENV=current uses the python on PATH instead of ./.venv (see README).
ifeq ($(PANOPTIC_OCR_ENV),current)
PY ?= python3
else
PY ?= .venv/bin/python
endif
QUICKSTART_CONFIG ?= configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml

.PHONY: setup quickstart test
setup:
	bash tools/setup_env.sh

quickstart: setup
	$(PY) train_net.py --config-file $(QUICKSTART_CONFIG)

test: setup
	$(PY) -m pytest
