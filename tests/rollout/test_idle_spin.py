"""The CPU build's sleep: a vLLM queue reader stops spinning for the next step while the
engine sleeps (the train phase), and spins as vLLM does once awake."""
from __future__ import annotations

import threading
import time

import pytest
import zmq
from vllm.distributed.device_communicators.shm_broadcast import SpinCondition

from seesaw.rollout import vllm_plugin


def cpu_seconds_while_waiting(reader: SpinCondition, seconds: float) -> float:
    """CPU time the calling thread spends in `reader.wait` for `seconds` of wall time."""
    started, cpu = time.monotonic(), time.thread_time()
    while time.monotonic() - started < seconds:
        reader.wait(timeout_ms=50)
    return time.thread_time() - cpu


@pytest.fixture
def reader(monkeypatch):
    monkeypatch.delenv(vllm_plugin.KEEP_SPINNING_ENV, raising=False)
    assert vllm_plugin.track_queue_readers_on_cpu(), "this machine's vLLM is the CPU build"
    context = zmq.Context()
    address = f"inproc://spin-{threading.get_ident()}-{time.monotonic_ns()}"
    writer = SpinCondition(is_reader=False, context=context, notify_address=address)
    reader = SpinCondition(is_reader=True, context=context, notify_address=address)
    yield reader
    for socket in (reader.local_notify_socket, reader.read_cancel_socket, reader.write_cancel_socket,
                   writer.local_notify_socket):
        socket.close(0)
    context.term()


def test_an_awake_reader_spins_for_the_next_message_and_a_sleeping_one_blocks(reader):
    assert reader in vllm_plugin._readers
    vllm_plugin.set_idle_spin(vllm_plugin.AWAKE_SPIN_SECONDS)
    reader.record_read()
    spinning = cpu_seconds_while_waiting(reader, 0.5)
    vllm_plugin.set_idle_spin(vllm_plugin.ASLEEP_SPIN_SECONDS)
    reader.record_read()  # the sleep call itself was the last message
    sleeping = cpu_seconds_while_waiting(reader, 0.5)
    # a spinning thread gets a core's share only when the machine is idle: the bounds hold
    # on a machine busy with other work too (a spinning reader uses tens of times the CPU)
    assert spinning > 0.05, f"vLLM's reader should spin while awake (used {spinning:.3f} s of 0.5 s)"
    assert sleeping < min(0.05, spinning / 5), f"a sleeping engine's reader spun {sleeping:.3f} s of 0.5 s " \
        f"(awake: {spinning:.3f} s)"
