"""On a GPU shared with vLLM the trainer builds only after /start; on the CPU it builds at once.

start_trainer's own code runs: the hardware, the group join and the backend are replaced at
the seams it calls (no GPU here), and each records when it ran.
"""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from seesaw.backend_selection import Hardware
from seesaw.spec import job_spec
from seesaw.trainer import server


def run_start(monkeypatch, hardware: Hardware) -> tuple[list[str], threading.Event, threading.Thread]:
    events: list[str] = []
    monkeypatch.setattr(server.Hardware, "detect", classmethod(lambda cls: hardware))
    monkeypatch.setattr(server, "join_trainer_group", lambda device, timeout: events.append(f"join {device}") or (0, 1))
    monkeypatch.setattr(server, "backend", lambda kind, name: lambda model_dir, spec, device: events.append(
        f"build {name} on {device}") or SimpleNamespace(device=device))
    released = threading.Event()

    def wait_for_start() -> None:
        events.append("wait for /start")
        released.wait(30)
        events.append("started")

    spec = job_spec({"trainer": {"backend": "auto"}, "weightSync": {"channel": "auto"}})
    env = SimpleNamespace(spec=spec, model_dir="/nowhere")
    thread = threading.Thread(target=lambda: server.start_trainer(env, wait_for_start), daemon=True)
    thread.start()
    return events, released, thread


def test_a_trainer_on_a_shared_gpu_allocates_only_after_start(monkeypatch):
    events, released, thread = run_start(monkeypatch, Hardware(gpu_count=1, shared_gpu=True, gpu_model="H200"))
    thread.join(2)
    assert thread.is_alive(), "the trainer built before /start"
    assert events == ["join cuda", "wait for /start"]
    released.set()
    thread.join(10)
    assert events == ["join cuda", "wait for /start", "started", "build megatron on cuda"]


def test_a_cpu_trainer_builds_while_the_engines_start(monkeypatch):
    events, released, thread = run_start(monkeypatch, Hardware())
    thread.join(10)
    assert not thread.is_alive() and events == ["join cpu", "build torch on cpu"]


@pytest.mark.parametrize("message", [("train_step", (), {})])
def test_a_follower_told_anything_but_start_first_refuses(monkeypatch, message):
    monkeypatch.setattr(server.distributed, "hear_pod_leader", lambda: message)
    with pytest.raises(ValueError, match="the pod leader asked for 'train_step' before the trainer started"):
        server.hear_start()
