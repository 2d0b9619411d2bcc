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
from seesaw.supervise import cpu_share, launch

SERVER = "seesaw.trainer.server"


def rank_env(base: dict[str, str], local_rank: int, processes: int) -> dict[str, str]:
    """The environment of the pod's trainer rank `local_rank` of `processes`."""
    return dict(base, LOCAL_RANK=str(local_rank), LOCAL_WORLD_SIZE=str(processes), **cpu_share(base, processes))


def main() -> int:
    processes = int(os.environ.get(pc.TRAINER_PROCESSES, "1"))
    return launch(SERVER, [rank_env(dict(os.environ), r, processes) for r in range(processes)], "trainer rank")


if __name__ == "__main__":
    sys.exit(main())
