"""The conductor's roster of rollout engines: the gang's fixed ones and rollout replicas that
join, fail and are replaced (checkpoint_engine/engines.py)."""
from __future__ import annotations

import pytest

from seesaw.checkpoint_engine.engines import EngineRoster
from seesaw.checkpoint_engine.gang import PodFailed, PodWorkers
from seesaw.checkpoint_engine.phases import Phase


class Engine:
    """An engine's client: answers a share of prompts with their indices, or fails."""

    def __init__(self, name: str, fails: bool = False, ready: bool = True) -> None:
        self.name, self.fails, self.ready = name, fails, ready

    def health(self):
        return {"ready": self.ready}


class Gang:
    """The gang port's view of joined replicas."""

    def __init__(self) -> None:
        self.new: dict[int, str] = {}

    def take_new_replicas(self):
        taken, self.new = self.new, {}
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
    assert [s.record["replica"] for s in roster.take_lost()] == [1]
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
