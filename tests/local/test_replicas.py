"""`seesaw run`'s rollout replicas: started once, kept across the gang's attempts, replaced
when a container dies, and ended (not replaced) when the checkpoint engine exits 0 after
leaving the gang, as a scaled-down pod ends."""
from seesaw.local.runner import Replicas


class FakePod:
    def __init__(self, index: int) -> None:
        self.index, self.name = index, f"rollout replica {index}"
        self.sidecar_code: int | None = None
        self.dead: tuple[str, int] | None = None
        self.stopped = False

    def main_exit_code(self) -> int | None:
        return self.sidecar_code

    def dead_worker(self) -> tuple[str, int] | None:
        return self.dead

    def stop(self) -> None:
        self.stopped = True


class FakeRuntime:
    def __init__(self) -> None:
        self.started: list[FakePod] = []

    def start_replica(self, index: int, env: dict[str, str]) -> FakePod:
        self.started.append(FakePod(index))
        return self.started[-1]


def test_replicas_start_with_the_first_attempt_and_outlive_the_next():
    runtime = FakeRuntime()
    replicas = Replicas(runtime, 2)
    replicas.start_once({"SEESAW_GANG_PORT": "1"})
    replicas.start_once({"SEESAW_GANG_PORT": "1"})  # the gang's second attempt
    assert [p.index for p in runtime.started] == [0, 1]
    assert not any(p.stopped for p in runtime.started)


def test_a_replica_that_left_stops_its_engine_and_is_not_replaced_and_a_dead_one_is(capsys):
    runtime = FakeRuntime()
    replicas = Replicas(runtime, 2)
    replicas.start_once({})
    left, failed = runtime.started
    left.sidecar_code = 0  # drained and told the gang it left
    failed.dead = ("rollout", -9)
    replicas.replace_dead()
    assert left.stopped and failed.stopped
    assert [p.index for p in runtime.started] == [0, 1, 1], "only the failed one is replaced"
    assert replicas.pods == [runtime.started[2]]
    out = capsys.readouterr().out
    assert "rollout replica 0's checkpoint engine exited 0 (it left the gang)" in out
    assert "rollout replica 1's rollout engine was killed by SIGKILL: starting a replacement" in out
    replicas.stop()
    assert runtime.started[2].stopped
