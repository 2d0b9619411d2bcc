"""The rollout container's entry point: one vLLM engine per tensor-parallel group of the pod.

With SEESAW_ROLLOUT_ENGINES engines (one unless the pod has GPUs for more), engine e is a
`seesaw.rollout.server` process on port SEESAW_ROLLOUT_PORT + e that sees only its own
GPUs (CUDA_VISIBLE_DEVICES: the e-th group of rollout.tensorParallel GPUs) and, on the CPU,
its share of the pod's threads. The container lives as long as all of them
(seesaw.supervise).
"""
from __future__ import annotations

import os
import sys

from seesaw import pod_contract as pc
from seesaw.spec import load_manifest
from seesaw.supervise import cpu_share, launch

SERVER = "seesaw.rollout.server"


def engine_env(base: dict[str, str], engine: int, engines: int, tensor_parallel: int, gpus: int) -> dict[str, str]:
    """The environment of engine `engine` of `engines`."""
    env = dict(base, **{pc.ROLLOUT_ENGINE: str(engine),
                        pc.ROLLOUT_PORT: str(int(base.get(pc.ROLLOUT_PORT, pc.DEFAULT_ROLLOUT_PORT)) + engine)})
    if gpus:
        visible = base.get("CUDA_VISIBLE_DEVICES")
        devices = visible.split(",") if visible else [str(g) for g in range(gpus)]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices[engine * tensor_parallel:(engine + 1) * tensor_parallel])
    else:
        env.update(cpu_share(base, engines))
    return env


def main() -> int:
    engines = int(os.environ.get(pc.ROLLOUT_ENGINES, "1"))
    if engines == 1:  # the server itself, as the pod's environment gives it
        return launch(SERVER, [dict(os.environ)], "rollout engine")
    spec = load_manifest(os.environ.get(pc.JOB_CONFIG, "/etc/seesaw/job.yaml"))["spec"]
    tp, gpus = spec["rollout"]["tensorParallel"], spec["cluster"]["gpusPerNode"]
    return launch(SERVER, [engine_env(dict(os.environ), e, engines, tp, gpus) for e in range(engines)], "rollout engine")


if __name__ == "__main__":
    sys.exit(main())
