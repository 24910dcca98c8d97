# Set-up and the two everyday commands. Everything lands in .venv; nothing outside it is changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.install-stamp
# torch first, pinned with torchvision: other builds break nnU-Net's trainer lookup on this CPU set-up.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: install test demo benchmarks clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

# the real sample case beside the project, when it is there, is segmented too
SAMPLE_CASE := $(wildcard ../shared/data/TCGA-DU-7294)

demo: install
	$(BIN)/brats demo --output demo_output $(if $(SAMPLE_CASE),--also $(SAMPLE_CASE))

benchmarks: install
	$(BIN)/python benchmarks/convert.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/predict.py

clean:
	rm -rf $(VENV) demo_output benchmarks/output .pytest_cache *.egg-info
