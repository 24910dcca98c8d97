# Set-up and the two everyday commands. Everything lands in .venv; nothing outside it is changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.install-stamp
# torch first, pinned with torchvision: other builds break nnU-Net's trainer lookup on this CPU set-up.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: install system-packages lint test demo benchmarks gpu-check clean

install: $(STAMP)

# Debian tools the export and app tests run for real: DICOM validators, a PACS, a browser, and `ip` for
# the PACS test's private loopback network. Installed with apt-get (as root, or through sudo) only when
# one of their commands is missing.
APT_PACKAGES  := dicom3tools dcmtk orthanc chromium chromium-driver iproute2
APT_COMMANDS  := dciodvfy dcentvfy storescu Orthanc chromium chromedriver ip
SUDO          := $(if $(filter 0,$(shell id -u)),,sudo)

system-packages:
	@missing=""; for c in $(APT_COMMANDS); do PATH="$$PATH:/usr/sbin" command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# ruff, configured in pyproject.toml
lint: install
	$(BIN)/ruff check .

test: install system-packages
	$(BIN)/python -m pytest

# the real sample case shipped with the tests (tests/data/README.md) is segmented too
SAMPLE_CASE := tests/data/TCGA-DU-7294

demo: install
	$(BIN)/brats demo --output demo_output --also $(SAMPLE_CASE)

benchmarks: install
	$(BIN)/python -m pip install --quiet -e '.[test,benchmarks]'
	$(BIN)/python benchmarks/convert.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/predict.py
	$(BIN)/python benchmarks/evaluate.py
	$(BIN)/python benchmarks/postprocess.py
	$(BIN)/python benchmarks/export.py
	$(BIN)/python benchmarks/preprocess.py
	$(BIN)/python benchmarks/back_to_patient.py
	$(BIN)/python benchmarks/atlas_stage.py
	$(BIN)/python benchmarks/registration_libraries.py
	$(BIN)/python benchmarks/demo.py

# on a CUDA machine: training with autocast and torch.compile, prediction timed (says so and stops without one)
gpu-check: install
	$(BIN)/python benchmarks/gpu.py

clean:
	rm -rf $(VENV) demo_output benchmarks/output .pytest_cache *.egg-info
