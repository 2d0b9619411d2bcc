"""The trained policy as a Hugging Face model directory: safetensors, config and tokenizer.

Every trainer backend yields its full tensors under Hugging Face names (`hf_state`, the same
stream a weight sync sends), so one writer serves them all; the config and tokenizer files
come unchanged from the model the job started from. Tensors are written as they arrive, in
shards of at most `SHARD_BYTES`, so a large model never sits whole in host memory.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from seesaw.model.cache import share_read_only

SHARD_BYTES = 4 * 1024 ** 3
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _copy_model_files(source: Path, target: Path) -> None:
    """Config, generation config and tokenizer: every file of the source but its weights."""
    for path in source.iterdir():
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES) and path.name not in WEIGHT_INDEXES:
            shutil.copy2(path, target / path.name)


def export_hf_model(named_tensors: Iterable[tuple[str, torch.Tensor]], source_model_dir: str | Path,
                    target: str | Path, shard_bytes: int = SHARD_BYTES) -> Path:
    """Write the tensors and the source model's other files into the (new) directory target."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=False)
    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]
    files: list[str] = []
    total = 0

    def flush() -> None:
        files.append(f".shard-{len(files):05d}.safetensors")
        save_file(shards[-1], str(target / files[-1]), metadata={"format": "pt"})
        shards[-1], sizes[-1] = {}, 0

    for name, tensor in named_tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and sizes[-1] + nbytes > shard_bytes:
            flush()
        # a copy on the host: views into a flat buffer or GPU shards cannot be saved as they are
        shards[-1][name] = tensor.detach().to("cpu", copy=True).contiguous()
        sizes[-1] += nbytes
        total += nbytes
    if shards[-1] or not files:
        flush()
    if len(files) == 1:
        (target / files[0]).rename(target / "model.safetensors")
    else:
        weight_map = {}
        for i, temp in enumerate(files, start=1):
            name = f"model-{i:05d}-of-{len(files):05d}.safetensors"
            (target / temp).rename(target / name)
            with safe_open(str(target / name), "pt") as shard:
                weight_map.update({key: name for key in shard.keys()})
        (target / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    _copy_model_files(Path(source_model_dir), target)
    share_read_only(target)  # safetensors writes 0600: `vllm serve` in another container runs as another user
    return target
