"""What every container of a pod reads from its environment: the job, the model, its ports."""
from __future__ import annotations

import os
from dataclasses import dataclass
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


def worker_env() -> WorkerEnv:
    """Read SEESAW_* variables (set by the operator's pod builder or by `seesaw run`)."""
    config = os.environ.get("SEESAW_JOB_CONFIG", "/etc/seesaw/job.yaml")
    manifest = load_manifest(config)
    model_dir = os.environ.get("SEESAW_MODEL_DIR") or manifest["spec"]["model"].get("path")
    if not model_dir:
        raise SystemExit("SEESAW_MODEL_DIR is unset and spec.model.path is empty: the workers need a model directory")
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
        run_dir=os.environ.get("SEESAW_RUN_DIR", "/tmp/seesaw"),
        pod_index=int(os.environ.get("SEESAW_POD_INDEX", "0")),
    )
