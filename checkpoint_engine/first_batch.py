"""Iteration 1's training batch, kept in the run dir and replayed into a trainer backend.

`seesaw run --keep-first-batch` writes it; `seesaw replay RUN_DIR --backend torch` trains a
fresh trainer of that backend on it, from the same starting weights, and compares its loss
with the run's. A Megatron layout whose first loss differs from the torch backend's on the
same batch computes something else (the sampled batches themselves differ from run to run,
so two runs cannot be compared directly).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from seesaw import pod_contract

FILE = "first-batch.json"


def write(run_dir: Path, batch: dict[str, Any]) -> None:
    record = dict(batch, model_dir=os.environ.get(pod_contract.MODEL_DIR, ""))
    staging = run_dir / f".{FILE}.partial"
    staging.write_text(json.dumps(record))
    staging.replace(run_dir / FILE)


def replay(run_dir: Path, backend_name: str, model_dir: str | None = None) -> dict[str, float]:
    """Train a fresh `backend_name` trainer (one rank, on the CPU) on the run's first batch:
    its loss, the run's first loss, and their difference."""
    import yaml

    import seesaw.trainer  # noqa: F401  (registers the trainer backends)
    from seesaw.interfaces import Sample, backend
    from seesaw.spec import SpecError, validate_manifest

    path = run_dir / FILE
    if not path.exists():
        raise SpecError("RUN_DIR", f"{path} does not exist: run the job with `seesaw run --keep-first-batch`")
    batch = json.loads(path.read_text())
    spec = validate_manifest(yaml.safe_load((run_dir / "job.yaml").read_text()))["spec"]
    spec["trainer"]["backend"] = backend_name
    for field in ("tensorParallel", "pipelineParallel", "expertParallel"):
        spec["trainer"][field] = 1  # one rank here: the layout under test is the run's
    trainer = backend("trainer", backend_name)(model_dir or batch["model_dir"], spec, device="cpu")
    samples = [Sample(**sample) for sample in batch["samples"]]
    loss = trainer.train_step(samples, tau=batch["tau"]).loss
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    return {"loss": loss, "run_loss": first["loss"], "difference": abs(loss - first["loss"])}
