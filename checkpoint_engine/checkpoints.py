"""The job's checkpoints on disk: one directory per checkpointed iteration, committed atomically.

    <spec.checkpoint.path>/
      iteration-000004/
        trainer/         the trainer backend's own format (a torch state file, or Megatron's
                         distributed checkpoint written by every rank)
        conductor.json   what the conductor needs to go on: iteration, RNG, sampler state,
                         unfinished partial rollouts, the metrics recorded so far
        model/           the policy as a Hugging Face model directory (`vllm serve` loads it)
      latest             the name of the newest complete checkpoint

Everything is written into `iteration-000004.partial/` first; renaming it and then replacing
`latest` are the two atomic steps, so a crash at any moment leaves the previous checkpoint
whole and `latest` pointing at a complete one. That holds for every backend, since none of
them writes where a reader looks.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

LATEST = "latest"
STATE_FILE = "conductor.json"
TRAINER_DIR = "trainer"
MODEL_DIR = "model"
KEEP = 2  # complete checkpoints kept; older ones are deleted once a newer one is committed


class CheckpointError(ValueError):
    """A checkpoint path that does not hold a complete checkpoint."""


def checkpoint_name(iteration: int) -> str:
    return f"iteration-{iteration:06d}"


def staging_dir(root: Path, iteration: int) -> Path:
    """An empty directory to write iteration's checkpoint into (a leftover of a crash is removed)."""
    staging = root / f"{checkpoint_name(iteration)}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def write_state(staging: Path, state: dict[str, Any]) -> None:
    _write_atomically(staging / STATE_FILE, json.dumps(state))


def commit(staging: Path) -> Path:
    """Make a fully written staging directory the latest checkpoint; prune old ones."""
    if not (staging / STATE_FILE).is_file():
        raise CheckpointError(f"{staging} has no {STATE_FILE}: not a complete checkpoint")
    root = staging.parent
    final = root / staging.name.removesuffix(".partial")
    shutil.rmtree(final, ignore_errors=True)  # the same iteration checkpointed again after a restart
    os.replace(staging, final)
    _write_atomically(root / LATEST, final.name + "\n")
    for old in sorted(p for p in root.glob("iteration-*") if p.is_dir() and not p.name.endswith(".partial"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint under root, or None when there is none yet."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    found = root / pointer.read_text().strip()
    return found if (found / STATE_FILE).is_file() else None


def resolve(path: str | Path) -> Path:
    """A checkpoint directory, or a checkpoints root (its latest checkpoint)."""
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    found = latest(path) if path.is_dir() else None
    if found is None:
        raise CheckpointError(f"{path} is neither a checkpoint directory (with {STATE_FILE}) "
                              f"nor a checkpoints directory with a '{LATEST}' one")
    return found


def read_state(checkpoint: Path) -> dict[str, Any]:
    try:
        return json.loads((checkpoint / STATE_FILE).read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {checkpoint / STATE_FILE}: {err}") from None
