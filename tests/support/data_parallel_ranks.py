"""Data-parallel trainer ranks for tests/trainer/test_data_parallel.py, in spawned processes
(a spawned child imports its target by module name, so it lives on the support path)."""
from __future__ import annotations

import os

import torch

from seesaw import pod_contract as pc
from seesaw.interfaces import Sample
from seesaw.spec import job_spec

def spec(mini_batch_prompts: int = 2) -> dict:
    return job_spec({"model": {"dtype": "float32"}, "rl": {"epochsPerIteration": 2, "miniBatchPrompts": mini_batch_prompts,
                                                          "objective": {"type": "mirror-descent"}},
                     "trainer": {"microBatchSize": 4, "optimizer": {"name": "adamw", "learningRate": 0.01, "gradClip": 1.0}}})


def samples() -> list[Sample]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for prompt in range(5):  # 5 prompts over 2 ranks: shares of 3 and 2
        p = torch.randint(4, 60, (4,), generator=gen).tolist()
        for k in range(3):
            r = torch.randint(4, 60, (3 + k,), generator=gen).tolist()
            out.append(Sample(prompt, p, r, (-torch.rand(len(r), generator=gen)).tolist(), reward=float(k == prompt % 3)))
    return out


def train_rank(rank: int, world: int, port: int, model_dir: str, queue, corrupt: bool, mini_batch_prompts: int) -> None:
    os.environ.update({pc.NUM_PODS: str(world), pc.POD_INDEX: str(rank), pc.RENDEZVOUS: "127.0.0.1",
                       pc.TRAINER_DIST_PORT: str(port)})
    from seesaw.trainer.distributed import ReplicaMismatch, join_trainer_group
    from seesaw.trainer.torch_backend import TorchTrainer

    torch.set_num_threads(1)
    join_trainer_group("cpu", 60)
    trainer = TorchTrainer(model_dir, spec(mini_batch_prompts))
    if corrupt and rank == 1:
        with torch.no_grad():
            trainer.flat[0] += 1.0  # a replica that drifted
    try:
        stats = trainer.train_step(samples(), tau=0.1)  # every rank gets the whole batch and takes its share
        queue.put((rank, trainer.flat.numpy().copy(), dict(stats.extra, loss=stats.loss, tokens=stats.tokens)))
    except ReplicaMismatch as err:
        queue.put((rank, None, str(err)))
