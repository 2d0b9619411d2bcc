"""What every container of a pod reads from its environment: the job, the model, its ports."""
from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seesaw.spec import load_manifest

DEFAULT_TRAINER_PORT = 18100
DEFAULT_ROLLOUT_PORT = 18200


@dataclass(frozen=True)
class WorkerEnv:
    manifest: dict[str, Any]
    model_dir: str
    trainer_url: str
    rollout_url: str
    trainer_port: int
    rollout_port: int
    run_dir: str
    pod_index: int

    @property
    def spec(self) -> dict[str, Any]:
        return self.manifest["spec"]


def shared_generated_model(spec: dict[str, Any], cache: Path) -> Path:
    """spec.model.generate in a pod: the first container to get here builds the model in the
    pod's shared run volume; the others wait on the lock and reuse it."""
    from seesaw.model.generate import prepare_model
    from seesaw.tasks import load_task

    if "generate" not in spec["model"]:
        raise SystemExit("spec.model: needs path (or generate); the workers have no model directory")
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return prepare_model(spec, load_task(spec), cache, log=lambda line: print(line, flush=True))


def worker_env() -> WorkerEnv:
    """Read SEESAW_* variables (set by the operator's pod builder or by `seesaw run`)."""
    config = os.environ.get("SEESAW_JOB_CONFIG", "/etc/seesaw/job.yaml")
    manifest = load_manifest(config)
    run_dir = os.environ.get("SEESAW_RUN_DIR", "/tmp/seesaw")
    model_dir = os.environ.get("SEESAW_MODEL_DIR") or manifest["spec"]["model"].get("path")
    if not model_dir:
        model_dir = str(shared_generated_model(manifest["spec"], Path(run_dir) / "models"))
    trainer_port = int(os.environ.get("SEESAW_TRAINER_PORT", DEFAULT_TRAINER_PORT))
    rollout_port = int(os.environ.get("SEESAW_ROLLOUT_PORT", DEFAULT_ROLLOUT_PORT))
    return WorkerEnv(
        manifest=manifest,
        model_dir=model_dir,
        trainer_port=trainer_port,
        rollout_port=rollout_port,
        # containers of one pod share the network namespace: localhost reaches the others
        trainer_url=os.environ.get("SEESAW_TRAINER_URL", f"http://127.0.0.1:{trainer_port}"),
        rollout_url=os.environ.get("SEESAW_ROLLOUT_URL", f"http://127.0.0.1:{rollout_port}"),
        run_dir=run_dir,
        pod_index=int(os.environ.get("SEESAW_POD_INDEX", "0")),
    )
