"""One trainer rank of a parity case, in its own process: `python megatron_ranks.py CASE.json RANK`.

The case (written by tests/trainer/megatron_parity.py) names the backend, the model, the
spec overrides, the world size and the rendezvous port; every rank builds the trainer as
`seesaw run`'s trainer processes do (one pod, LOCAL_RANK of LOCAL_WORLD_SIZE), scores the
probe samples, trains `steps` steps on the same batch, and rank 0 writes what it saw
(log-probs, each step's loss, the full HF weights after the last step) for the test to compare.
A checkpoint can be saved after a step, or loaded before the first.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import torch

from seesaw import pod_contract as pc
from seesaw import spec_reads
from seesaw.interfaces import Sample


def probe_samples(prompts: int = 4, per_prompt: int = 2, seed: int = 0) -> list[Sample]:
    """Prompts of varied lengths with k responses each, rewards mixed within every group."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for prompt in range(prompts):
        ids = torch.randint(4, 60, (3 + prompt % 3,), generator=gen).tolist()
        for k in range(per_prompt):
            response = torch.randint(4, 60, (2 + (prompt + k) % 4,), generator=gen).tolist()
            out.append(Sample(prompt, ids, response, (-torch.rand(len(response), generator=gen) - 1.0).tolist(),
                              reward=float(k == prompt % per_prompt)))
    return out


def run(case: dict, rank: int) -> None:
    warnings.filterwarnings("ignore")
    os.environ.update({pc.NUM_PODS: "1", pc.POD_INDEX: "0", "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(case["world"]), pc.RENDEZVOUS: "127.0.0.1",
                       pc.TRAINER_DIST_PORT: str(case["port"])})
    torch.set_num_threads(1)
    import seesaw.trainer  # noqa: F401  (registers the backends)
    from seesaw.interfaces import backend

    spec = spec_reads.recording(case["spec"])  # with SEESAW_SPEC_READS set: which fields the backend reads
    trainer = backend("trainer", case["backend"])(case["model_dir"], spec, device="cpu")
    start = 0
    if case.get("load_from"):
        start = trainer.load_checkpoint(case["load_from"])
    samples = probe_samples()
    logprobs = trainer.sequence_logprobs([s.prompt_ids for s in samples], [s.response_ids for s in samples])
    losses = []
    for step in range(start, case["steps"]):
        losses.append(trainer.train_step(samples, tau=0.1).loss)
        if case.get("save_after") == step + 1:
            trainer.save_checkpoint(case["save_dir"], step + 1)
    state = {name: tensor.detach().float().clone() for name, tensor in trainer.hf_state()}
    record = {"logprobs": logprobs, "losses": losses, "state": state}
    if case.get("offload"):  # a phase cycle: every group out to host memory and back
        trainer.offload()
        record["offloaded"] = trainer.last_memory
        trainer.onload()
        record["onloaded"] = trainer.last_memory
        record["state_after_cycle"] = {name: tensor.detach().float().clone() for name, tensor in trainer.hf_state()}
        record["loss_after_cycle"] = trainer.train_step(samples, tau=0.1).loss
    if rank == 0:
        torch.save(record, Path(case["out"]) / "rank0.pt")
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()), int(sys.argv[2]))
