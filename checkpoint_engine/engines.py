"""Every rollout engine the conductor rolls out on: the gang pods' engines, fixed for the
life of the gang, and the rollout replicas' (spec.rollout.replicas), which join, leave and
are replaced while the job runs.

A replica that joins is admitted at the next sync once its engines answer, so it starts
with the current weights. A replica that fails never fails the job: it is dropped (lost)
and the prompts it had not answered go to the other engines in the same phase. One that is
scaled down leaves the same way, recorded as left: it refuses new calls as draining, or it
told the gang it left. A gang engine's failure still fails the phase, naming its pod.
"""
from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, TypeVar

from seesaw.checkpoint_engine.gang import GangServer, PodFailed, PodWorkers, ReplicaWorkers, is_draining, replica_workers
from seesaw.checkpoint_engine.phases import Phase
from seesaw.rl.training import split_sizes
from seesaw.rpc import WorkerClient

T = TypeVar("T")
Share = tuple["EngineSlot", int, int]  # an engine and its [start, end) of the prompts
# a follower pod's adjacent shares in one call: the answers, and the seconds of each share
PodCall = Callable[[PodWorkers, list[Share]], tuple[list[Any], list[float]]]
# An engine this many times slower than the median one over a rollout is named as a straggler
# in the log. The phase still waits for it, up to spec.timeouts.rolloutSeconds, whose error
# names it. Re-issuing its share to engines that finished (backup requests) would shorten the
# phase, but the straggler's own generation cannot be abandoned from outside through vLLM's
# offline API, so it would keep its GPU busy into the train phase: not done.
STRAGGLER_RATIO = 3.0


class Departure(Enum):
    """Why a replica's engines left the roster; the value marks them in metrics.jsonl."""

    LOST = "lost"  # it failed
    LEFT = "left"  # it was scaled down, and said so


@dataclass
class EngineSlot:
    owner: PodWorkers | ReplicaWorkers
    client: WorkerClient
    # what it served and proved after the last sync (metrics.jsonl, summary.json)
    record: dict[str, Any] = field(default_factory=dict)
    initialised: bool = False  # its side of the weight channel is open (/weights/init)
    served: int = 0  # prompts since the last count_served()
    busy_seconds: float = 0.0  # spent answering them
    # read for every engine of the roster per pod at each sync: a field, not an isinstance
    is_replica: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_replica = isinstance(self.owner, ReplicaWorkers)


def _record(pod: int | None, engine: int, replica: int | None = None, weight_version: int = 0) -> dict[str, Any]:
    record = {"pod": pod, "engine": engine, "prompts": 0, "weight_version": weight_version, "weight_checksum": "",
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
        # dropped replicas' engines, and why, for the iteration's metrics
        self.departed: list[tuple[EngineSlot, Departure]] = []
        self._membership = threading.RLock()  # a sync drops replicas from every gang pod's thread

    @property
    def records(self) -> list[dict[str, Any]]:
        return [slot.record for slot in self.slots]

    def gang_slots(self) -> list[EngineSlot]:
        return [slot for slot in self.slots if not slot.is_replica]

    def replicas(self) -> list[ReplicaWorkers]:
        """Every replica the conductor knows of, admitted or still loading (to release at the end)."""
        admitted = {id(s.owner): s.owner for s in self.slots if s.is_replica}
        return list(admitted.values()) + list(self.pending.values())

    def slots_of(self, owner: PodWorkers | ReplicaWorkers) -> list[EngineSlot]:
        return [slot for slot in self.slots if slot.owner is owner]

    def fed_by(self, pod: PodWorkers, pod_count: int) -> list[EngineSlot]:
        """The replicas' engines that take their weights from this pod's trainer."""
        return [s for s in self.slots if s.is_replica and s.owner.index % pod_count == pod.index]

    # --- membership ----------------------------------------------------------------------
    def _take_changes(self) -> None:
        """The replicas that joined or left the gang since the last look. A leave names the
        replica's index and URL, so a newer pod of the same index that already joined stays."""
        if not self.gang:
            return
        with self._membership:
            for index, url in self.gang.take_new_replicas().items():
                self.pending[index] = replica_workers(index, url, self.engines_per_replica)
            for index, url in sorted(self.gang.take_left()):
                if index in self.pending and self.pending[index].relay_url == url:
                    del self.pending[index]
                    self.log(f"rollout replica {index} left (scaled down) before it was admitted")
                for owner in self._admitted(index, url):
                    self.drop(owner, "scaled down", Departure.LEFT)

    def _admitted(self, index: int, url: str | None = None) -> list[ReplicaWorkers]:
        """The admitted replica(s) of this index (of this relay URL, if given)."""
        owners = {id(s.owner): s.owner for s in self.slots
                  if s.is_replica and s.owner.index == index and (url is None or s.owner.relay_url == url)}
        return list(owners.values())

    def _ready(self) -> dict[int, list[dict[str, Any]]]:
        """Joined replicas whose engines all answer: index -> each engine's health."""
        ready = {}
        for index, replica in sorted(self.pending.items()):
            states = [client.health() for client in replica.rollouts]
            if all(state and state.get("ready") for state in states):
                ready[index] = states
        return ready

    def admit_replicas(self) -> list[int]:
        """Replicas that joined and whose engines all answer become slots (a replica that
        re-joined replaces its old self), replicas that left are removed; returns the
        admitted indices."""
        self._take_changes()
        ready = self._ready()
        with self._membership:
            for index, states in ready.items():
                replica = self.pending.pop(index)
                for old in self._admitted(index):
                    self.drop(old, "replaced by a new pod of the same index")
                # one that outlived a restart of the gang holds the last conductor's weights: its
                # version goes on from there (each sync checks it took exactly one more)
                self.slots += [EngineSlot(replica, client, _record(None, e, replica=index,
                                                                   weight_version=state.get("weight_version") or 0))
                               for e, (client, state) in enumerate(zip(replica.rollouts, states))]
                self.log(f"rollout replica {index} joined: {len(replica.rollouts)} engine(s) take the current weights")
        return list(ready)

    def wait_for_replicas(self, count: int, timeout: float) -> None:
        """At the start: give the spec's replicas until `timeout` to join with ready engines,
        so the first sync admits them; the job starts without those that miss it."""
        deadline = time.monotonic() + timeout
        ready: dict[int, list[dict[str, Any]]] = {}
        while len(ready) < count and time.monotonic() < deadline:
            self._take_changes()
            ready = self._ready()
            time.sleep(0.5)
        if len(ready) < count:
            self.log(f"{len(ready)} of {count} rollout replica(s) ready; the others join when they are")

    def drop(self, replica: ReplicaWorkers, reason: str, departure: Departure = Departure.LOST) -> None:
        with self._membership:
            gone = [s for s in self.slots if s.owner is replica]
            if not gone:
                return
            self.slots = [s for s in self.slots if s.owner is not replica]
            self.departed += [(slot, departure) for slot in gone]
        self.log(f"rollout replica {replica.index} {departure.value} ({reason}); the job goes on without it")

    def drop_failed(self, slot: EngineSlot, err: BaseException, step: str = "") -> None:
        """A replica whose engine call failed is dropped: as left when it is being scaled down
        (it refuses calls as draining, or it already told the gang it left), else as lost."""
        with self._membership:
            self._take_changes()  # a replica that drained and exited refuses connections, having left
            if not any(s.owner is slot.owner for s in self.slots):
                return
            if is_draining(err):
                self.drop(slot.owner, "scaled down", Departure.LEFT)
            else:
                self.drop(slot.owner, f"{slot.client.name}{' failed ' + step if step else ''}: {err}")

    def count_served(self) -> None:
        """Start counting each engine's prompts afresh (an iteration's rollout)."""
        for slot in self.slots + [slot for slot, _ in self.departed]:
            slot.served, slot.busy_seconds = 0, 0.0

    def take_departed(self) -> list[tuple[EngineSlot, Departure]]:
        departed, self.departed = self.departed, []
        return departed

    # --- work ----------------------------------------------------------------------------
    def shares(self, count: int, slots: list[EngineSlot] | None = None) -> list[tuple[int, int]]:
        """Each engine's contiguous [start, end) of `count` prompts: a prompt's k samples stay
        on one engine."""
        slots = self.slots if slots is None else slots
        sizes = split_sizes(count, len(slots))
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return [(start, start + size) for start, size in zip(starts, sizes)]

    def run_shares(self, count: int, call: Callable[[EngineSlot, int, int], list[T]], phase: Phase, timeout: float,
                   call_pod: PodCall | None = None) -> list[T]:
        """`call(slot, start, end)` on every engine's share at once; with `call_pod(pod, shares)`,
        a follower pod's adjacent shares go in one call (its checkpoint engine calls its engines),
        which answers each share's seconds. A replica that fails is dropped and its share split
        over the engines left, until every prompt is answered."""
        self._take_changes()  # no call to a replica known to have left
        pending = [(slot, lo, hi) for slot, (lo, hi) in zip(self.slots, self.shares(count)) if hi > lo]
        out: list[T] = []
        deadline = time.monotonic() + timeout
        while pending:
            calls = self._calls(pending, call_pod is not None)
            with ThreadPoolExecutor(len(calls), thread_name_prefix=f"engines-{phase.value}") as pool:
                futures = [pool.submit(self._timed, call, call_pod, shares) for shares in calls]
                _, late = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
                if late:
                    names = sorted({slot.client.name for shares, f in zip(calls, futures) if f in late for slot, _, _ in shares})
                    raise PodFailed(phase, f"{', '.join(names)} did not finish {phase.value} in time (spec.timeouts)")
            unanswered = []
            for shares, future in zip(calls, futures):
                err = future.exception()
                slot, lo, hi = shares[0]  # a replica's engine is called alone
                if err is None:
                    out += future.result()
                elif slot.is_replica:
                    self.drop_failed(slot, err)
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

    @staticmethod
    def _calls(pending: list[Share], by_pod: bool) -> list[list[Share]]:
        """The shares each call answers: one engine's; `by_pod`: a follower pod's adjacent ones
        together (pod 0 calls its own engines, a replica's are called one by one: a failed one's
        share goes to the others)."""
        calls: list[list[Share]] = []
        for share in pending:
            slot, lo, _ = share
            last = calls[-1][-1] if calls else None
            if by_pod and _is_follower(slot) and last and last[0].owner is slot.owner and last[2] == lo:
                calls[-1].append(share)
            else:
                calls.append([share])
        return calls

    @staticmethod
    def _timed(call: Callable[[EngineSlot, int, int], list[T]],
               call_pod: PodCall | None,
               shares: list[Share]) -> list[T]:
        first = shares[0][0]
        if call_pod and _is_follower(first):
            answered, seconds = call_pod(first.owner, shares)
        else:
            started = time.monotonic()
            answered = call(*shares[0])
            seconds = [time.monotonic() - started]
        for (slot, lo, hi), spent in zip(shares, seconds):
            slot.served += hi - lo
            slot.busy_seconds += spent
        return answered

    def slowest(self) -> tuple[EngineSlot, float] | None:
        """The engine that took longest since count_served(), and its time over the median
        engine's; None where fewer than three served (a median of two says nothing). Each
        engine had an equal share of prompts, so its time is its speed: a slow node, a
        CPU-starved engine, a failing GPU. STRAGGLER_RATIO or more makes it a straggler."""
        busy = [slot for slot in self.slots if slot.served]
        if len(busy) < 3:
            return None
        median = statistics.median(slot.busy_seconds for slot in busy)
        slowest = max(busy, key=lambda slot: slot.busy_seconds)
        return slowest, slowest.busy_seconds / median if median > 0 else 1.0


def _is_follower(slot: EngineSlot) -> bool:
    """An engine of a gang pod with a checkpoint engine of its own (not pod 0's, not a replica's)."""
    return not slot.is_replica and slot.owner.engine is not None
