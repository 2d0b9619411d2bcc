"""What every container of a pod reads from its environment: the job, the model, its ports."""
from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seesaw import pod_contract as pc
from seesaw.spec import load_manifest



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
    num_pods: int
    rendezvous: str  # host of pod 0
    gang_port: int
    trainer_dist_port: int
    pod_ip: str
    rollout_engines: int = 1  # vLLM engines in the pod; engine e serves on rollout_port + e
    rollout_engine: int = 0   # which one this process is (rollout engines only)
    replica: int | None = None  # a rollout-only pod's index (no trainer); None in the gang's pods

    @property
    def spec(self) -> dict[str, Any]:
        return self.manifest["spec"]

    @property
    def rollout_urls(self) -> list[str]:
        """Every rollout engine of the pod (containers of one pod share the network namespace)."""
        if self.rollout_engines == 1:
            return [self.rollout_url]
        return [f"http://127.0.0.1:{self.rollout_port + e}" for e in range(self.rollout_engines)]

    @property
    def listen_hosts(self) -> list[str]:
        """Where a worker's server listens: loopback, for the pod's other containers, and in a
        pod its address too, where the kubelet's startup, liveness and readiness probes connect."""
        return ["127.0.0.1"] + ([self.pod_ip] if self.pod_ip and not self.pod_ip.startswith("127.") else [])

    @property
    def gang_url(self) -> str:
        """Pod 0's checkpoint engine, where the other pods' checkpoint engines join the gang."""
        return f"http://{self.rendezvous}:{self.gang_port}"


def shared_prepared_model(spec: dict[str, Any], cache: Path) -> Path:
    """spec.model.generate, hub or package in a pod: the first container to get here prepares
    the model in the pod's model cache; the others wait on the lock and reuse it."""
    from seesaw.model.sources import prepare_model
    from seesaw.tasks import load_task

    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return prepare_model(spec, load_task(spec), cache, log=lambda line: print(line, flush=True))


def worker_env() -> WorkerEnv:
    """Read the pod contract's variables (set by the operator's pod builder or by `seesaw run`)."""
    env = os.environ
    # written by Seesaw (the operator's ConfigMap, seesaw run) with PyYAML: read back by its rules
    manifest = load_manifest(env.get(pc.JOB_CONFIG, "/etc/seesaw/job.yaml"), as_kubectl=False)
    if env.get(pc.ROLLOUT_REPLICAS):  # the count of now, not the manifest's first one
        manifest["spec"]["rollout"]["replicas"] = int(env[pc.ROLLOUT_REPLICAS])
    run_dir = env.get(pc.RUN_DIR, "/tmp/seesaw")
    model_dir = env.get(pc.MODEL_DIR) or manifest["spec"]["model"].get("path")
    if not model_dir:
        model_dir = str(shared_prepared_model(manifest["spec"], Path(env.get(pc.MODEL_CACHE) or Path(run_dir) / "models")))
    trainer_port = int(env.get(pc.TRAINER_PORT, pc.DEFAULT_TRAINER_PORT))
    rollout_port = int(env.get(pc.ROLLOUT_PORT, pc.DEFAULT_ROLLOUT_PORT))
    return WorkerEnv(
        manifest=manifest,
        model_dir=model_dir,
        trainer_port=trainer_port,
        rollout_port=rollout_port,
        # containers of one pod share the network namespace: localhost reaches the others
        trainer_url=env.get(pc.TRAINER_URL, f"http://127.0.0.1:{trainer_port}"),
        rollout_url=env.get(pc.ROLLOUT_URL, f"http://127.0.0.1:{rollout_port}"),
        run_dir=run_dir,
        pod_index=int(env.get(pc.POD_INDEX, "0")),
        num_pods=int(env.get(pc.NUM_PODS, "1")),
        rendezvous=env.get(pc.RENDEZVOUS, "127.0.0.1"),
        gang_port=int(env.get(pc.GANG_PORT, pc.DEFAULT_GANG_PORT)),
        trainer_dist_port=int(env.get(pc.TRAINER_DIST_PORT, pc.DEFAULT_TRAINER_DIST_PORT)),
        pod_ip=env.get(pc.POD_IP, "127.0.0.1"),
        rollout_engines=int(env.get(pc.ROLLOUT_ENGINES, "1")),
        rollout_engine=int(env.get(pc.ROLLOUT_ENGINE, "0")),
        replica=int(env[pc.ROLLOUT_REPLICA]) if env.get(pc.ROLLOUT_REPLICA) else None,
    )
