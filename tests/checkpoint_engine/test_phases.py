"""The phase state machine: legal order, timeouts, and crashed workers fail fast and clearly."""
import subprocess
import sys
import textwrap
import time

import pytest

from seesaw.checkpoint_engine.phases import IllegalTransition, Phase, PhaseError, PhaseMachine, PhaseTimeout, WorkerCrashed
from seesaw.rpc import WorkerClient

WORKER = textwrap.dedent("""
    import sys, time
    from seesaw.rpc import serve

    def slow(body):
        time.sleep(float(body["seconds"]))
        return {"slept": body["seconds"]}

    def crash(body):
        import os
        os._exit(3)

    def fail(body):
        raise ValueError("bucket 7 has the wrong size")

    serve({"/slow": slow, "/crash": crash, "/fail": fail}, int(sys.argv[1]), lambda: {"ready": True})
""")


@pytest.fixture
def worker(tmp_path, unused_port):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    process = subprocess.Popen([sys.executable, str(script), str(unused_port)], cwd=tmp_path)
    client = WorkerClient("trainer", f"http://127.0.0.1:{unused_port}")
    deadline = time.monotonic() + 30
    while client.health() is None:
        assert time.monotonic() < deadline, "test worker did not start"
        assert process.poll() is None, "test worker exited"
        time.sleep(0.1)
    yield process, client
    process.kill()
    process.wait()


@pytest.fixture
def unused_port():
    from seesaw.local.runner import free_port

    return free_port()


def machine(**timeouts):
    return PhaseMachine(timeouts={Phase[name.upper()]: seconds for name, seconds in timeouts.items()})


def test_phases_follow_the_iteration_order_and_are_timed():
    m = machine()
    seen = []
    m.on_transition = lambda old, new, it: seen.append((old.value, new.value))
    for phase in (Phase.STARTING, Phase.SYNC, Phase.ROLLOUT, Phase.TRAIN, Phase.SYNC):
        assert m.run(phase, 1, lambda: phase.value) == phase.value
    m.finish(1)
    assert seen == [("starting", "sync"), ("sync", "rollout"), ("rollout", "train"), ("train", "sync"), ("sync", "done")]
    assert [r.phase for r in m.timeline] == [Phase.STARTING, Phase.SYNC, Phase.ROLLOUT, Phase.TRAIN, Phase.SYNC]


def test_every_order_the_conductor_uses_is_legal():
    # iteration: rollout, train, optionally checkpoint (state still on the device), sync, optionally eval
    for checkpoint in ([], [Phase.CHECKPOINT]):
        for tail in ([], [Phase.EVAL]):
            m = machine()
            for phase in ([Phase.STARTING, Phase.SYNC, Phase.EVAL]
                          + [Phase.ROLLOUT, Phase.TRAIN, *checkpoint, Phase.SYNC, *tail] * 2 + [Phase.EVAL]):
                m.run(phase, 1, lambda: None)
            m.finish(2)
            assert m.state == Phase.DONE


def test_training_before_rollout_is_an_illegal_transition():
    m = machine()
    m.run(Phase.STARTING, 0, lambda: None)
    m.run(Phase.SYNC, 0, lambda: None)
    with pytest.raises(IllegalTransition, match="train: cannot follow sync"):
        m.run(Phase.TRAIN, 0, lambda: None)


def test_a_hung_phase_times_out_at_its_limit(worker):
    _, client = worker
    m = machine(train=1.0)
    m.state = Phase.ROLLOUT
    started = time.monotonic()
    with pytest.raises(PhaseTimeout, match=r"phase train: did not finish within 1s"):
        m.run(Phase.TRAIN, 4, lambda: client.call("/slow", {"seconds": 30}, timeout=60))
    assert time.monotonic() - started < 5
    assert m.state == Phase.FAILED


def test_call_timeout_inside_a_phase_is_a_phase_timeout(worker):
    _, client = worker
    m = machine(train=10.0)
    m.state = Phase.ROLLOUT
    with pytest.raises(PhaseTimeout, match="trainer did not answer /slow within 1s"):
        m.run(Phase.TRAIN, 4, lambda: client.call("/slow", {"seconds": 5}, timeout=1))


def test_a_worker_that_dies_mid_call_is_reported_at_once(worker):
    process, client = worker
    m = machine(sync=60.0)
    m.state = Phase.TRAIN
    started = time.monotonic()
    with pytest.raises(WorkerCrashed, match=r"phase sync: trainer at http://127\.0\.0\.1:\d+ is not answering /crash"):
        m.run(Phase.SYNC, 2, lambda: client.call("/crash", timeout=60))
    assert time.monotonic() - started < 5
    assert process.wait(timeout=5) == 3


def test_a_dead_worker_is_connection_refused_not_a_hang(worker):
    process, client = worker
    process.kill()
    process.wait()
    m = machine(rollout=60.0)
    m.state = Phase.SYNC
    with pytest.raises(WorkerCrashed, match="connection refused"):
        m.run(Phase.ROLLOUT, 1, lambda: client.call("/slow", {"seconds": 0}))


def test_worker_errors_carry_the_workers_reason(worker):
    _, client = worker
    m = machine()
    m.state = Phase.TRAIN
    with pytest.raises(PhaseError, match="trainer failed /fail: ValueError: bucket 7 has the wrong size"):
        m.run(Phase.SYNC, 1, lambda: client.call("/fail"))
