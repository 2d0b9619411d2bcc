"""The trainer container's entry point: one trainer rank per GPU of the pod (one on the CPU).

With SEESAW_TRAINER_PROCESSES ranks, rank l of the pod runs `seesaw.trainer.server` with
LOCAL_RANK=l and LOCAL_WORLD_SIZE set as torchrun sets them: it takes GPU l, joins the
job's trainer group as rank pod x processes + l (seesaw.trainer.distributed), and local
rank 0 serves the checkpoint engine while the others follow it. On the CPU each rank gets
its share of the pod's threads. The container lives as long as all of them
(seesaw.supervise).
"""
from __future__ import annotations

import os
import sys

from seesaw import pod_contract as pc
from seesaw.supervise import run_all

SERVER = "seesaw.trainer.server"


def rank_env(base: dict[str, str], local_rank: int, processes: int) -> dict[str, str]:
    """The environment of the pod's trainer rank `local_rank` of `processes`."""
    env = dict(base, LOCAL_RANK=str(local_rank), LOCAL_WORLD_SIZE=str(processes))
    if base.get(pc.CPU_THREADS):
        share = str(max(1, int(base[pc.CPU_THREADS]) // processes))
        env.update({pc.CPU_THREADS: share, "OMP_NUM_THREADS": share})
    return env


def main() -> int:
    processes = int(os.environ.get(pc.TRAINER_PROCESSES, "1"))
    if processes == 1:  # the server itself: nothing to supervise
        os.execv(sys.executable, [sys.executable, "-m", SERVER])
    return run_all(SERVER, [rank_env(dict(os.environ), r, processes) for r in range(processes)], "trainer rank")


if __name__ == "__main__":
    sys.exit(main())
