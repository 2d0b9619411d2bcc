"""The sandbox: limits, timeouts, no network, a scrubbed environment, cleanup."""
import os
import textwrap

import pytest

from seesaw.rl.rewards.sandbox import SandboxLimits, isolation, run_python

FAST = SandboxLimits(timeout_seconds=3.0, memory_mib=256)


def test_runs_a_program_with_stdin_and_captures_its_output():
    result = run_python("import sys; print(sys.stdin.read()[::-1]); print('err', file=sys.stderr)", "abc", FAST)
    assert result.ok and result.stdout == "cba\n" and result.stderr == "err\n"


def test_a_failing_program_reports_its_exit_status():
    result = run_python("raise SystemExit(3)", "", FAST)
    assert result.returncode == 3 and not result.ok


def test_an_endless_loop_is_killed_at_the_wall_clock_timeout():
    result = run_python("while True: pass", "", SandboxLimits(timeout_seconds=0.5))
    assert result.timed_out and result.returncode is None and result.seconds < 3


def test_a_sleeping_program_is_killed_too():
    result = run_python("import time; time.sleep(60)", "", SandboxLimits(timeout_seconds=0.5))
    assert result.timed_out and result.seconds < 3


def test_memory_beyond_the_limit_is_refused():
    result = run_python("x = bytearray(1024 * 1024 * 1024)", "", FAST)
    assert not result.ok and "MemoryError" in result.stderr


def test_the_environment_is_scrubbed_and_the_working_directory_is_fresh():
    os.environ["SEESAW_TEST_SECRET"] = "hunter2"
    try:
        result = run_python("import os; print(sorted(os.environ)); print(os.listdir('.'))", "", FAST)
    finally:
        del os.environ["SEESAW_TEST_SECRET"]
    assert "SEESAW_TEST_SECRET" not in result.stdout and "hunter2" not in result.stdout
    assert result.stdout.splitlines()[1] == "['main.py']"


def test_output_is_capped():
    result = run_python("print('x' * 5000)", "", SandboxLimits(max_output_bytes=100))
    assert result.output_truncated and len(result.stdout) == 100


NETWORK = textwrap.dedent("""
    import socket
    try:
        socket.create_connection(("10.255.255.1", 80), timeout=1)
        print("connected")
    except OSError as error:
        print("blocked", error.errno)
""")


@pytest.mark.skipif(not isolation().network, reason="no network namespace on this host: network isolation is best-effort")
def test_there_is_no_network():
    result = run_python(NETWORK, "", FAST)
    assert result.stdout.startswith("blocked"), result.stdout


FORK_BOMB = textwrap.dedent("""
    import os, time
    children = 0
    try:
        while children < 1000:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            children += 1
    except OSError:
        pass
    print(children)
""")


@pytest.mark.skipif(not isolation().process_limit, reason="RLIMIT_NPROC does not hold here (running as root without a uid switch)")
def test_a_fork_bomb_stops_at_the_process_limit_and_leaves_nothing_behind():
    limits = SandboxLimits(timeout_seconds=5.0, max_processes=8)
    result = run_python(FORK_BOMB, "", limits)
    assert result.ok and int(result.stdout) < 8
    # the children slept for 60 s: they must be gone with the run
    assert _sandbox_processes() == []


@pytest.mark.skipif(not isolation().pid_namespace, reason="no PID namespace here: children that leave the group survive")
def test_a_timed_out_run_takes_its_children_with_it():
    source = "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n        time.sleep(60)\n" \
             "while True:\n    pass\n"
    result = run_python(source, "", SandboxLimits(timeout_seconds=0.5))
    assert result.timed_out
    assert _sandbox_processes() == []


def _sandbox_processes():
    return [pid for pid in os.listdir("/proc") if pid.isdigit() and (_uid(pid) or 0) >= 2_000_000]


def _uid(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Uid:"))
    except (OSError, StopIteration):
        return None


def test_limits_name_the_bad_field():
    with pytest.raises(ValueError, match="timeout_seconds: expected > 0"):
        SandboxLimits(timeout_seconds=0)
    with pytest.raises(ValueError, match="memory_mib"):
        SandboxLimits(memory_mib=0)
    assert SandboxLimits.from_spec({"timeoutSeconds": 2, "memoryMiB": 64}) == SandboxLimits(timeout_seconds=2.0, memory_mib=64)


def test_this_host_isolates_as_documented():
    # as root with util-linux: both namespaces and the uid switch are expected to work
    found = isolation()
    if os.geteuid() == 0 and found.prefix:
        assert found.network and found.pid_namespace and found.process_limit
