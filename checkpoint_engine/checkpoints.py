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


def _fsync_tree(directory: Path) -> None:
    """Every file and directory below (and including) directory on disk, before `latest` names it."""
    for path in sorted(directory.rglob("*"), reverse=True) + [directory]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _iteration(path: Path) -> int:
    return int(path.name.removeprefix("iteration-"))


def commit(staging: Path) -> Path:
    """Make a fully written staging directory the latest checkpoint; prune older ones."""
    if not (staging / STATE_FILE).is_file():
        raise CheckpointError(f"{staging} has no {STATE_FILE}: not a complete checkpoint")
    root = staging.parent
    final = root / staging.name.removesuffix(".partial")
    _fsync_tree(staging)
    if final.exists():  # the same iteration checkpointed again after a restart: move the old one aside first
        stale = root / f"{final.name}.stale"
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(final, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.replace(staging, final)
    _write_atomically(root / LATEST, final.name + "\n")
    # only checkpoints older than this one: a newer one (an earlier job's, on a reused volume) is not ours to judge
    older = sorted((p for p in root.glob("iteration-*") if p.is_dir() and p.name[len("iteration-"):].isdigit()
                    and _iteration(p) < _iteration(final)), key=_iteration)
    for old in older[:max(0, len(older) - (KEEP - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint under root, or None when there is none yet."""
    pointer = root / LATEST
    if pointer.is_file() and (root / pointer.read_text().strip() / STATE_FILE).is_file():
        return root / pointer.read_text().strip()
    # a crash while the same iteration was checkpointed again: the newest complete one left
    complete = [p for p in root.glob("iteration-*") if p.name[len("iteration-"):].isdigit() and (p / STATE_FILE).is_file()]
    return max(complete, key=_iteration, default=None)


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
