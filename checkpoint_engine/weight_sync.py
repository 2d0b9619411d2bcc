"""The sync phase: the trainer's new weights into every live rollout engine, then each engine's
proof that it holds them. One sequence for every channel (docs/ARCHITECTURE.md, "The call
sequence of each phase"); the channel itself is the weights room's business.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from seesaw.checkpoint_engine.engines import EngineRoster, EngineSlot
from seesaw.checkpoint_engine.gang import PodWorkers, on_each_guarded, on_pod
from seesaw.checkpoint_engine.phases import DeterministicFailure, Phase, PhaseError

MiB = 1024 * 1024
# Largest per-token |log-prob difference| between an engine and the trainer on the probe
# batch, by dtype: well above kernel and reduction-order noise, far below what wrong or
# stale weights give (nats).
PROBE_TOLERANCE = {"float32": 1e-2, "float16": 0.25, "bfloat16": 0.5}


def check_engine(slot: EngineSlot, result: dict[str, Any], handle: dict[str, Any], expected: list[list[float]],
                 served: list[list[float]], dtype: str) -> float:
    """Refuse to roll out on an engine that did not load this sync's weights: its weight
    version, the checksum of what it loaded, and its log-probs on the probe batch. Returns
    the largest log-prob difference."""
    record, rollout = slot.record, slot.client
    expected_version = record["weight_version"] + 1
    if result["weight_version"] != expected_version:
        raise PhaseError(Phase.SYNC, f"{rollout.name} reports weight version {result['weight_version']}, "
                                     f"expected {expected_version}: it did not take this sync's weights")
    if result["weight_checksum"] != handle["weight_checksum"]:
        raise PhaseError(Phase.SYNC, f"{rollout.name} loaded weights with checksum {result['weight_checksum'] or '(none)'}, "
                                     f"the trainer staged {handle['weight_checksum']}: the transfer corrupted or "
                                     f"missed tensors")
    diff = max(abs(a - b) for xs, ys in zip(expected, served) for a, b in zip(xs, ys))
    tolerance = PROBE_TOLERANCE[dtype]
    if not diff <= tolerance:  # NaN fails too
        # the checksum matched: the engine holds every byte the trainer sent and computes
        # something else with them (a layer it does not reload, a model it runs otherwise),
        # which the same weights into the same engine after a restart would repeat
        raise DeterministicFailure(
            Phase.SYNC, f"{rollout.name}'s log-probs on the probe batch differ from the trainer's by {diff:.3g} "
                        f"(> {tolerance} for {dtype}) although it loaded exactly the bytes "
                        f"the trainer sent (checksum {handle['weight_checksum']}): it computes something else "
                        f"with the same weights (weight version {result['weight_version']}); not a transfer error, "
                        "so a restart would fail the same way")
    return diff


@dataclass
class PodSync:
    """One pod's sync: its trainer's handle, and what the trainer computed on the probe batch."""

    pod: PodWorkers
    handle: dict[str, Any]
    offloaded_bytes: int = 0
    expected: list[list[float]] | None = None
    trainer_probe_seconds: float = 0.0


class WeightSync:
    def __init__(self, spec: dict[str, Any], roster: EngineRoster, probe: dict[str, list[list[int]]],
                 remaining: Callable[[], float], pod_count: Callable[[], int]) -> None:
        self.bucket_bytes = spec["weightSync"]["bucketMiB"] * MiB
        self.dtype = spec["model"]["dtype"]
        self.roster, self.probe = roster, probe
        self.remaining, self.pod_count = remaining, pod_count

    def on_pod(self, pod: PodWorkers) -> list[tuple[EngineSlot, dict[str, Any]]]:
        """The pod's trainer stages, its engines and the replicas it feeds pull and prove:
        [(engine, its result)] of every engine that took the weights. The pod runs its own part
        (pod_commands: one call of pod 0's, two where replicas pull between the trainer's
        staging and its release); the proof is checked here."""
        replicas = self.roster.fed_by(pod, self.pod_count())  # they never sleep: no trainer shares their GPUs
        own = self.roster.slots_of(pod)
        staging = {"bucket_bytes": self.bucket_bytes, "open_channel": not all(slot.initialised for slot in own)}
        if replicas:
            staged = on_pod(pod, "sync/stage", staging, self.remaining)  # a gang engine's failure fails the sync
            replica_updated = [(slot, result) for slot, result in zip(replicas, on_each_guarded(replicas, lambda slot: self.update(slot, staged["handle"])))
                               if self.replica_survives(slot, result, "the weight update")]
            proved = on_pod(pod, "sync/prove", {"probe": self.probe}, self.remaining)
        else:
            answer = on_pod(pod, "sync", dict(staging, probe=self.probe), self.remaining)
            staged, proved, replica_updated = answer["staged"], answer["proved"], []
        for slot in own:
            slot.initialised = True
        sync = PodSync(pod, staged["handle"], staged["offloaded_bytes"] + proved["offloaded_bytes"], proved["expected"],
                       proved["trainer_probe_seconds"])
        checked = [(slot, self.proven(sync, slot, result, served, proved["probe_seconds"]))
                   for slot, result, served in zip(own, staged["updated"], proved["served"])]
        checked += [(slot, result) for (slot, _), result in
                    zip(replica_updated, on_each_guarded(replica_updated, lambda pair: self.prove(sync, *pair)))
                    if self.replica_survives(slot, result, "the probe")]
        return checked

    def update(self, slot: EngineSlot, handle: dict[str, Any]) -> dict[str, Any]:
        """A rollout replica's engine pulls the buckets its trainer pod staged; the first sync opens its side of the channel."""
        if not slot.initialised:
            slot.client.call("/weights/init", {"receiver_init": handle["receiver_init"]}, timeout=self.remaining())
            slot.initialised = True
        return slot.client.call("/weights/update", {"handle": handle}, timeout=self.remaining())

    def prove(self, sync: PodSync, slot: EngineSlot, result: dict[str, Any]) -> dict[str, Any]:
        """A rollout replica's engine scores the probe batch (it never sleeps: no trainer shares its GPUs)."""
        started = time.perf_counter()
        served = slot.client.call("/logprobs", self.probe, timeout=self.remaining())
        return self.proven(sync, slot, result, served, time.perf_counter() - started)

    def proven(self, sync: PodSync, slot: EngineSlot, result: dict[str, Any], served: list[list[float]],
               seconds: float) -> dict[str, Any]:
        return dict(result, probe_max_abs_logprob_diff=check_engine(slot, result, sync.handle, sync.expected, served, self.dtype),
                    offloaded_bytes=sync.offloaded_bytes, staging_peak_bytes=sync.handle["staging"]["peak_bytes"],
                    probe_seconds=sync.trainer_probe_seconds + seconds)

    def replica_survives(self, slot: EngineSlot, outcome: Any, step: str) -> bool:
        """A replica whose step failed is dropped (never rolled out on); the job goes on."""
        if isinstance(outcome, Exception):
            self.roster.drop_failed(slot, outcome, step)
            return False
        return True

    @staticmethod
    def summary(checked: list[tuple[EngineSlot, dict[str, Any]]]) -> dict[str, Any]:
        """Record what each engine proved; the sync's figures are its slowest and worst engine's."""
        for slot, result in checked:
            slot.record.update(weight_version=result["weight_version"], weight_checksum=result["weight_checksum"],
                               probe_max_abs_logprob_diff=result["probe_max_abs_logprob_diff"])
        results = [result for _, result in checked]
        return dict(results[0], seconds=max(r["seconds"] for r in results),
                    staging_peak_bytes=max(r["staging_peak_bytes"] for r in results),
                    probe_seconds=max(r["probe_seconds"] for r in results),
                    probe_max_abs_logprob_diff=max(r["probe_max_abs_logprob_diff"] for r in results))
