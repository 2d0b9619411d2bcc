"""Every rollout engine the conductor rolls out on: the gang pods' engines, fixed for the
life of the gang, and the rollout replicas' (spec.rollout.replicas), which join, leave and
are replaced while the job runs.

A replica that joins is admitted at the next sync once its engines answer, so it starts
with the current weights. A replica that fails never fails the job: it is dropped and the
prompts it had not answered go to the other engines in the same phase. A gang engine's
failure still fails the phase, naming its pod.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from seesaw.checkpoint_engine.gang import GangServer, PodFailed, PodWorkers, ReplicaWorkers, replica_workers
from seesaw.checkpoint_engine.phases import Phase
from seesaw.rl.training import split_sizes
from seesaw.rpc import WorkerClient

T = TypeVar("T")


@dataclass
class EngineSlot:
    owner: PodWorkers | ReplicaWorkers
    client: WorkerClient
    # what it served and proved after the last sync (metrics.jsonl, summary.json)
    record: dict[str, Any] = field(default_factory=dict)
    initialised: bool = False  # its side of the weight channel is open (/weights/init)
    served: int = 0  # prompts since the last count_served()

    @property
    def is_replica(self) -> bool:
        return isinstance(self.owner, ReplicaWorkers)


def _record(pod: int | None, engine: int, replica: int | None = None) -> dict[str, Any]:
    record = {"pod": pod, "engine": engine, "prompts": 0, "weight_version": 0, "weight_checksum": "",
              "probe_max_abs_logprob_diff": None}
    return record if replica is None else dict(record, replica=replica)


class EngineRoster:
    def __init__(self, pods: list[PodWorkers], gang: GangServer | None, engines_per_replica: int,
                 log: Callable[[str], None]) -> None:
        self.slots = [EngineSlot(pod, client, _record(pod.index, e)) for pod in pods for e, client in enumerate(pod.rollouts)]
        self.gang = gang
        self.engines_per_replica = engines_per_replica
        self.log = log
        self.pending: dict[int, ReplicaWorkers] = {}  # joined, engines not answering yet
        self.lost: list[EngineSlot] = []  # dropped replicas' engines, for the iteration's metrics

    @property
    def records(self) -> list[dict[str, Any]]:
        return [slot.record for slot in self.slots]

    def gang_slots(self) -> list[EngineSlot]:
        return [slot for slot in self.slots if not slot.is_replica]

    def replicas(self) -> list[ReplicaWorkers]:
        """Every replica the conductor knows of, admitted or still loading (to release at the end)."""
        admitted = {id(s.owner): s.owner for s in self.slots if s.is_replica}
        return list(admitted.values()) + list(self.pending.values())

    def slot_of(self, client: WorkerClient) -> EngineSlot:
        return next(slot for slot in self.slots if slot.client is client)

    def fed_by(self, pod: PodWorkers, pod_count: int) -> list[EngineSlot]:
        """The replicas' engines that take their weights from this pod's trainer."""
        return [s for s in self.slots if s.is_replica and s.owner.index % pod_count == pod.index]

    # --- membership ----------------------------------------------------------------------
    def _take_joined(self) -> None:
        if self.gang:
            for index, url in self.gang.take_new_replicas().items():
                self.pending[index] = replica_workers(index, url, self.engines_per_replica)

    def _ready(self) -> list[int]:
        """Joined replicas whose engines all answer."""
        return [index for index, replica in sorted(self.pending.items())
                if all((state := client.health()) and state.get("ready") for client in replica.rollouts)]

    def admit_replicas(self) -> list[int]:
        """Replicas that joined and whose engines all answer become slots (a replica that
        re-joined replaces its old self); returns the admitted indices."""
        self._take_joined()
        admitted = self._ready()
        for index in admitted:
            replica = self.pending.pop(index)
            for old in {id(s.owner): s.owner for s in self.slots if s.is_replica and s.owner.index == index}.values():
                self.drop(old, "replaced by a new pod of the same index")
            self.slots += [EngineSlot(replica, client, _record(None, e, replica=index))
                           for e, client in enumerate(replica.rollouts)]
            self.log(f"rollout replica {index} joined: {len(replica.rollouts)} engine(s) take the current weights")
        return admitted

    def wait_for_replicas(self, count: int, timeout: float) -> None:
        """At the start: give the spec's replicas until `timeout` to join with ready engines,
        so the first sync admits them; the job starts without those that miss it."""
        deadline = time.monotonic() + timeout
        ready: list[int] = []
        while len(ready) < count and time.monotonic() < deadline:
            self._take_joined()
            ready = self._ready()
            time.sleep(0.5)
        if len(ready) < count:
            self.log(f"{len(ready)} of {count} rollout replica(s) ready; the others join when they are")

    def drop(self, replica: ReplicaWorkers, reason: str) -> None:
        gone = [s for s in self.slots if s.owner is replica]
        if not gone:
            return
        self.slots = [s for s in self.slots if s.owner is not replica]
        self.lost += gone
        self.log(f"rollout replica {replica.index} lost ({reason}); the job goes on without it")

    def count_served(self) -> None:
        """Start counting each engine's prompts afresh (an iteration's rollout)."""
        for slot in self.slots + self.lost:
            slot.served = 0

    def take_lost(self) -> list[EngineSlot]:
        lost, self.lost = self.lost, []
        return lost

    # --- work ----------------------------------------------------------------------------
    def shares(self, count: int, slots: list[EngineSlot] | None = None) -> list[tuple[int, int]]:
        """Each engine's contiguous [start, end) of `count` prompts: a prompt's k samples stay
        on one engine."""
        slots = self.slots if slots is None else slots
        sizes = split_sizes(count, len(slots))
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return [(start, start + size) for start, size in zip(starts, sizes)]

    def run_shares(self, count: int, call: Callable[[EngineSlot, int, int], list[T]], phase: Phase,
                   timeout: float) -> list[T]:
        """`call(slot, start, end)` on every engine's share at once. A replica that fails is
        dropped and its share split over the engines left, until every prompt is answered."""
        pending = [(slot, lo, hi) for slot, (lo, hi) in zip(self.slots, self.shares(count)) if hi > lo]
        out: list[T] = []
        deadline = time.monotonic() + timeout
        while pending:
            with ThreadPoolExecutor(len(pending), thread_name_prefix=f"engines-{phase.value}") as pool:
                futures = [pool.submit(call, *job) for job in pending]
                _, late = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
                if late:
                    names = sorted({job[0].client.name for job, f in zip(pending, futures) if f in late})
                    raise PodFailed(phase, f"{', '.join(names)} did not finish {phase.value} in time (spec.timeouts)")
            unanswered = []
            for (slot, lo, hi), future in zip(pending, futures):
                err = future.exception()
                if err is None:
                    out += future.result()
                elif slot.is_replica:
                    self.drop(slot.owner, f"{slot.client.name}: {err}")
                    unanswered.append((lo, hi))
                else:
                    raise PodFailed(phase, f"pod {slot.owner.index}: {err}") from err
            pending = []
            if unanswered and not self.slots:
                raise PodFailed(phase, "no rollout engine left")
            for lo, hi in unanswered:
                pending += [(slot, lo + a, lo + b) for slot, (a, b) in zip(self.slots, self.shares(hi - lo)) if b > a]
            if unanswered:
                self.log(f"{sum(hi - lo for lo, hi in unanswered)} prompt(s) re-issued to the other engines")
        return out
