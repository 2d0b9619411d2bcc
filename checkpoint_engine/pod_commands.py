"""A gang pod's part of a phase, on its own trainer and rollout engines. Pod 0's conductor runs
it in-process for pod 0; a follower's checkpoint engine runs it for its pod when the conductor
asks once (`/gang/<command>`, checkpoint_engine/gang.py). So pod 0 makes one or two calls a pod
per phase however many engines a pod has, and the order of the calls on the workers is
written once, here (docs/ARCHITECTURE.md, "The call sequence of each phase").
"""
from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from seesaw import wire
from seesaw.rpc import WorkerClient

T = TypeVar("T")
Remaining = Callable[[], float]  # the seconds the phase has left, read before each call


def on_each(items: list, work: Callable[[Any], T]) -> list[T]:
    """`work` on every item at once (a pod's rollout engines), results in order; the first error raises."""
    if len(items) == 1:
        return [work(items[0])]
    with ThreadPoolExecutor(len(items), thread_name_prefix="engine") as pool:
        return list(pool.map(work, items))


def on_engines(engines: list[WorkerClient], route: str, body: dict[str, Any], remaining: Remaining) -> list[Any]:
    """`route` with the same body on every engine at once; the answers in engine order."""
    return on_each(engines, lambda engine: engine.call(route, body, timeout=remaining()))


def generate(_: WorkerClient | None, engines: list[WorkerClient], body: dict[str, Any], remaining: Remaining) -> bytes:
    """body: the `request` (n, temperature, ...), the pod's adjacent `prompt_ids`, and `shares`:
    [engine, prompt count] in prompt order. Each engine generates its share; the answer is one
    buffer (seesaw.wire) whose prompt indices count from the pod's first prompt, with each
    share's seconds in its metadata (the conductor's straggler report names the engine)."""
    shares, prompts = body["shares"], body["prompt_ids"]
    starts = list(itertools.accumulate((count for _, count in shares), initial=0))

    def timed(share: int) -> tuple[bytes, float]:
        engine, count = shares[share]
        started = time.monotonic()
        answer = engines[engine].call("/generate", dict(body["request"], prompt_ids=prompts[starts[share]:starts[share] + count]),
                                      timeout=remaining())
        return answer, time.monotonic() - started

    answers = on_each(list(range(len(shares))), timed)
    return wire.concatenate([answer for answer, _ in answers], starts[:-1], {"seconds": [spent for _, spent in answers]})


def train(trainer: WorkerClient, engines: list[WorkerClient], share: bytes, remaining: Remaining) -> dict[str, Any]:
    """The engines free their memory before the trainer takes its state back; then the step on
    the pod's share of the batch (a seesaw.wire buffer)."""
    on_engines(engines, "/sleep", {}, remaining)
    trainer.call("/onload", timeout=remaining())
    return trainer.call("/train", share, timeout=remaining())


def save_checkpoint(trainer: WorkerClient, _: list[WorkerClient], body: dict[str, Any], remaining: Remaining) -> None:
    """The trainer writes its part of the checkpoint (`path`), then exports the policy as a
    Hugging Face model (`model_path`). Every pod's trainer makes its collectives in this order."""
    trainer.call("/checkpoint/save", {"path": body["path"], "iteration": body["iteration"]}, timeout=remaining())
    trainer.call("/export", {"path": body["model_path"]}, timeout=remaining())


def stage_weights(trainer: WorkerClient, engines: list[WorkerClient], body: dict[str, Any],
                  remaining: Remaining) -> dict[str, Any]:
    """The sync's first half: the trainer stages its weights (`bucket_bytes`), the engines pull
    them (`open_channel`: the first sync opens their side of the channel first). Rollout
    replicas fed by this trainer pull next, before `prove_weights` releases the staged copies."""
    # the optimiser state makes room for the rollout's weights; the parameters stay to be read
    offloaded = trainer.call("/offload", {"keep_weights": True}, timeout=remaining())
    on_engines(engines, "/wake_up", {"tags": ["weights"]}, remaining)
    handle = trainer.call("/weights/handle", {"bucket_bytes": body["bucket_bytes"]}, timeout=remaining())
    if body["open_channel"]:
        on_engines(engines, "/weights/init", {"receiver_init": handle["receiver_init"]}, remaining)
    updated = on_engines(engines, "/weights/update", {"handle": handle}, remaining)
    return {"handle": handle, "offloaded_bytes": offloaded["bytes"], "updated": updated}


def prove_weights(trainer: WorkerClient, engines: list[WorkerClient], body: dict[str, Any],
                  remaining: Remaining) -> dict[str, Any]:
    """The sync's second half: the staged copies freed, the trainer's parameters offloaded, the
    trainer and the engines score the `probe` batch (the conductor compares them)."""
    trainer.call("/weights/release", timeout=remaining())  # staging copies: the rollout's memory
    started = time.perf_counter()
    expected = trainer.call("/logprobs", body["probe"], timeout=remaining())
    trainer_seconds = time.perf_counter() - started
    offloaded = trainer.call("/offload", {"keep_weights": False}, timeout=remaining())
    on_engines(engines, "/wake_up", {"tags": ["kv_cache"]}, remaining)
    started = time.perf_counter()
    served = on_engines(engines, "/logprobs", body["probe"], remaining)
    return {"offloaded_bytes": offloaded["bytes"], "expected": expected, "trainer_probe_seconds": trainer_seconds,
            "served": served, "probe_seconds": time.perf_counter() - started}


def sync_weights(trainer: WorkerClient, engines: list[WorkerClient], body: dict[str, Any],
                 remaining: Remaining) -> dict[str, Any]:
    """Both halves of the sync at once, where no rollout replica pulls from this pod's trainer."""
    return {"staged": stage_weights(trainer, engines, body, remaining),
            "proved": prove_weights(trainer, engines, body, remaining)}


# the command -> what runs it: (the pod's trainer, its rollout engines, the body, the time left)
COMMANDS: dict[str, Callable[[WorkerClient | None, list[WorkerClient], Any, Remaining], Any]] = {
    "rollout": generate, "train": train, "checkpoint": save_checkpoint, "sync": sync_weights, "sync/stage": stage_weights, "sync/prove": prove_weights}
