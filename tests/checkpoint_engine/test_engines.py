"""The conductor's roster of rollout engines: the gang's fixed ones and rollout replicas that
join, fail and are replaced (checkpoint_engine/engines.py)."""
from __future__ import annotations

import pytest

from seesaw.checkpoint_engine.engines import EngineRoster
from seesaw.checkpoint_engine.gang import DRAINING, PodFailed, PodWorkers
from seesaw.checkpoint_engine.phases import Phase
from seesaw.rpc import WorkerError


class Engine:
    """An engine's client: answers a share of prompts with their indices, or fails."""

    def __init__(self, name: str, fails: bool = False, ready: bool = True) -> None:
        self.name, self.fails, self.ready = name, fails, ready
        self.weight_version = 0

    def health(self):
        return {"ready": self.ready, "weight_version": self.weight_version}


class Gang:
    """The gang port's view of joined replicas."""

    def __init__(self) -> None:
        self.new: dict[int, str] = {}
        self.left: set[tuple[int, str]] = set()

    def take_new_replicas(self):
        taken, self.new = self.new, {}
        return taken

    def take_left(self):
        taken, self.left = self.left, set()
        return taken


def answer(slot, lo, hi):
    if slot.client.fails:
        raise ConnectionError("connection refused")
    return [(slot.client.name, i) for i in range(lo, hi)]


def roster_with_replicas(monkeypatch, *failing: int):
    """One gang engine and two replicas, the ones listed failing; `loading` holds the indices
    of replicas whose next engine does not answer yet."""
    loading: set[int] = set()

    def replica_workers(index, url, engines):
        from seesaw.checkpoint_engine.gang import ReplicaWorkers
        engine = Engine(f"rollout replica {index}'s rollout engine", fails=index in failing, ready=index not in loading)
        return ReplicaWorkers(index, [engine], url)

    monkeypatch.setattr("seesaw.checkpoint_engine.engines.replica_workers", replica_workers)
    gang, lines = Gang(), []
    roster = EngineRoster([PodWorkers(0, None, [Engine("pod 0's rollout engine")])], gang, 1, lines.append)
    gang.new = {0: "http://r0", 1: "http://r1"}
    assert roster.admit_replicas() == [0, 1]
    return roster, lines, loading


def test_a_failed_replicas_prompts_go_to_the_other_engines_exactly_once(monkeypatch):
    roster, lines, _ = roster_with_replicas(monkeypatch, 1)
    answered = roster.run_shares(9, answer, Phase.ROLLOUT, timeout=30)
    assert sorted(i for _, i in answered) == list(range(9)), "every prompt answered once"
    assert {name for name, i in answered if 6 <= i < 9} == {"pod 0's rollout engine", "rollout replica 0's rollout engine"}
    assert [s.record.get("replica") for s in roster.slots] == [None, 0]
    assert [(s.record["replica"], why.value) for s, why in roster.take_departed()] == [(1, "lost")]
    assert any(line.startswith("rollout replica 1 lost (rollout replica 1's rollout engine: connection refused)")
               for line in lines)
    assert "3 prompt(s) re-issued to the other engines" in lines


def test_a_gang_engines_failure_fails_the_phase_naming_its_pod(monkeypatch):
    roster, _, _ = roster_with_replicas(monkeypatch)
    roster.slots[0].client.fails = True
    with pytest.raises(PodFailed, match=r"phase rollout: pod 0: connection refused"):
        roster.run_shares(9, answer, Phase.ROLLOUT, timeout=30)


def test_a_replica_waits_for_its_engines_and_a_rejoined_one_replaces_the_old(monkeypatch):
    roster, lines, loading = roster_with_replicas(monkeypatch)
    old = roster.slots[2].owner
    loading.add(1)
    roster.gang.new = {1: "http://r1-new"}  # replica 1's replacement joined; its engine still loads
    assert roster.admit_replicas() == [] and roster.slots[2].owner is old, "not admitted before its engine answers"
    roster.pending[1].rollouts[0].ready = True
    assert roster.admit_replicas() == [1]
    assert roster.slots[2].owner is not old and roster.slots[2].owner.relay_url == "http://r1-new"
    assert "rollout replica 1 lost (replaced by a new pod of the same index); the job goes on without it" in lines


def departed(roster):
    return [(slot.record["replica"], why.value) for slot, why in roster.take_departed()]


def test_a_replica_that_left_is_removed_at_the_next_admit_but_not_its_newer_pod(monkeypatch):
    roster, lines, loading = roster_with_replicas(monkeypatch)
    roster.gang.left = {(0, "http://r0")}
    assert roster.admit_replicas() == []
    assert [s.record.get("replica") for s in roster.slots] == [None, 1]
    assert "rollout replica 0 left (scaled down); the job goes on without it" in lines
    # replica 1's new pod joined and was admitted before its old pod's leave came in
    roster.gang.new = {1: "http://r1-new"}
    assert roster.admit_replicas() == [1]
    roster.gang.left = {(1, "http://r1")}
    roster.admit_replicas()
    assert [s.owner.relay_url for s in roster.slots if s.is_replica] == ["http://r1-new"]
    assert departed(roster) == [(0, "left"), (1, "lost")], "the old replica 1 was replaced, once"
    # one that leaves while its engines still load is never admitted
    loading.add(2)
    roster.gang.new = {2: "http://r2"}
    roster.admit_replicas()
    roster.gang.left = {(2, "http://r2")}
    roster.pending[2].rollouts[0].ready = True
    assert roster.admit_replicas() == [] and 2 not in roster.pending


def test_a_draining_replicas_prompts_are_reissued_and_it_is_recorded_as_left(monkeypatch):
    roster, lines, _ = roster_with_replicas(monkeypatch)

    def answer_or_leave(slot, lo, hi):
        replica = slot.record.get("replica")
        if replica == 0:  # drained and exited during the call: its leave came in, its port refuses
            roster.gang.left.add((0, "http://r0"))
            raise ConnectionError("connection refused")
        if replica == 1:  # the relay's answer to a new call while it drains
            raise WorkerError(f"{slot.client.name} failed /generate: rollout replica 1 {DRAINING}")
        return answer(slot, lo, hi)

    answered = roster.run_shares(9, answer_or_leave, Phase.ROLLOUT, timeout=30)
    assert sorted(i for _, i in answered) == list(range(9)), "every prompt answered once"
    assert {name for name, _ in answered} == {"pod 0's rollout engine"}
    assert departed(roster) == [(0, "left"), (1, "left")]
    assert "rollout replica 1 left (scaled down); the job goes on without it" in lines
    assert not any(" lost " in line for line in lines)


def test_a_replica_that_outlived_a_gang_restart_goes_on_from_its_weight_version(monkeypatch):
    roster, _, loading = roster_with_replicas(monkeypatch)
    loading.add(2)
    roster.gang.new = {2: "http://r2"}
    roster.admit_replicas()
    engine = roster.pending[2].rollouts[0]
    engine.ready, engine.weight_version = True, 7  # synced 7 times by the last gang's conductor
    assert roster.admit_replicas() == [2]
    assert roster.slots[-1].record["weight_version"] == 7, "the sync expects version 8 from it, not 1"


def test_a_slow_engine_is_found_by_its_time_over_the_median_and_a_late_one_named_by_the_timeout(monkeypatch):
    import time

    roster, _, _ = roster_with_replicas(monkeypatch)  # the gang's engine and replicas 0 and 1

    def slow_replica_1(slot, lo, hi):
        time.sleep(0.4 if slot.record.get("replica") == 1 else 0.05)
        return answer(slot, lo, hi)

    roster.count_served()
    assert roster.run_shares(9, slow_replica_1, Phase.ROLLOUT, timeout=30)
    slot, ratio = roster.slowest()
    assert slot.client.name == "rollout replica 1's rollout engine" and 4 < ratio < 12
    roster.count_served()
    roster.run_shares(9, answer, Phase.ROLLOUT, timeout=30)
    assert roster.slowest()[1] < 3, "no straggler when every engine keeps up"
    with pytest.raises(PodFailed, match=r"rollout replica 1's rollout engine did not finish rollout in time"):
        roster.run_shares(9, lambda slot, lo, hi: slow_replica_1(slot, lo, hi) if slot.record.get("replica") != 1
                          else time.sleep(2) or [], Phase.ROLLOUT, timeout=0.5)
