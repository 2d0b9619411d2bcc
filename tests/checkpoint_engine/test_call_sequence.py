"""The conductor's calls in each phase, for every weight channel and trainer backend, against
the table in docs/ARCHITECTURE.md, through the trainer server's real memory-state rules.

The trainer and rollout containers are their real route tables (TrainerService,
RolloutService) in this process, with payloads passed through JSON as over HTTP. The
"torch" trainer is the real CPU backend on a tiny Llama; the "megatron" one moves its
parameters, gradients and optimiser state with Megatron's own StateOffloader, whose offload
really frees the storages (CPU tensors here), so reading weights after a full offload would
read freed memory. Channels are senders that build their handles with the shared
`weight_handle`, in each channel's shape.
"""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from seesaw import wire
from seesaw.checkpoint_engine.conductor import Conductor
from seesaw.checkpoint_engine.phases import DeterministicFailure, PhaseError, caused_by
from seesaw.interfaces import MemoryReport, Sample, weight_handle
from seesaw.model.generate import build_tokenizer
from seesaw.rollout.server import RolloutService
from seesaw.spec import validate_manifest
from seesaw.tasks import load_task
from seesaw.trainer.megatron_backend import StateOffloader
from seesaw.trainer.memory_state import TrainerMemoryState, TrainerStateError
from seesaw.checkpoint_engine import weights
from seesaw.checkpoint_engine.weights import ChannelRules, weight_channel
from seesaw.checkpoint_engine.weights.checksum import checksum_hex, params_checksum
from seesaw.trainer.server import TrainerService
from seesaw.trainer.torch_backend import TorchTrainer
from seesaw.trainer.weight_staging import WeightStaging
import stub_channel
from documented_calls import documented_sequences

# the three of the product, and a pull channel registered from the tests as a new one would be
CHANNELS = ["mooncake-tcp", "mooncake-rdma", "cuda-ipc", stub_channel.NAME]
BACKENDS = ["torch", "megatron"]


@pytest.fixture(autouse=True)
def stub_channel_registered(monkeypatch):
    monkeypatch.setitem(weights.CHANNELS, stub_channel.NAME, weights.ChannelEntry("stub_channel", "CHANNEL", ChannelRules()))


def job(channel: str) -> dict:
    """The manifest as validated (the CRD's enum knows the product's channels), then the channel."""
    manifest = {
        "apiVersion": "seesaw.dev/v1alpha1", "kind": "RLJob", "metadata": {"name": "sequence"},
        "spec": {"model": {"dtype": "float32", "generate": {}}, "cluster": {"nodes": 1, "gpusPerNode": 0},
                 "trainer": {"backend": "torch"}, "weightSync": {"channel": "mooncake-tcp"},
                 "rollout": {"samplesPerPrompt": 2, "maxTokens": 4, "maxModelLen": 32},
                 "rl": {"iterations": 2, "promptsPerIteration": 4, "evaluation": {"prompts": 4, "everyIterations": 1}},
                 "checkpoint": {"everyIterations": 1},
                 "prompts": {"source": "builtin:reverse", "digits": 3}},
    }
    resolved = validate_manifest(manifest)
    resolved["spec"]["weightSync"]["channel"] = channel
    return resolved


class MegatronLikeTrainer(TorchTrainer):
    """The CPU trainer whose offload frees memory the way Megatron's does (StateOffloader)."""

    def _offloader(self) -> StateOffloader:
        off = StateOffloader(pin=False)
        off.add("params", [self.flat])
        off.add("grads", [p.grad for p in self.model.parameters() if p.grad is not None], keep_content=False)
        off.add("optimizer", [t for s in self.optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.dim()])
        return off

    def offload(self, keep_weights: bool = False) -> MemoryReport:
        self.offloader = getattr(self, "offloader", None) or self._offloader()
        reports = self.offloader.offload(["grads", "optimizer"] + ([] if keep_weights else ["params"]))
        return MemoryReport(sum(r.bytes for r in reports.values()), 0.0)

    def onload(self) -> MemoryReport:
        reports = self.offloader.onload() if getattr(self, "offloader", None) else {}
        self.offloader = None  # optimiser state appears at the first step: register it again next time
        return MemoryReport(sum(r.bytes for r in reports.values()), 0.0)


class FakeSender:
    """A channel's sender: handle in the channel's shape; staging it reads every weight."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.staged = False

    def stage(self, named_tensors, bucket_bytes: int, declared=None) -> dict:
        tensors = [(n, t.clone()) for n, t in named_tensors]  # reads the weights, as a copy into buckets does
        total = sum(t.numel() * t.element_size() for _, t in tensors)
        self.staged = True
        extra = ({"per_gpu": [{"gpu_uuid": "GPU-0", "buckets": [], "shared": []}]} if self.channel == "cuda-ipc"
                 else {"session": "127.0.0.1:1", "buckets": []})
        init = {} if self.channel == "cuda-ipc" else {"capacity_bytes": total, "hostname": "127.0.0.1",
                                                      "protocol": self.channel.removeprefix("mooncake-"), "device": ""}
        self.tensors = tensors
        handle = weight_handle(self.channel, total, 1, receiver_init=init, **extra)
        self.receiver_init = handle["receiver_init"]
        return handle

    def release(self) -> None:
        self.staged = False


class FakeRolloutEngine:
    """Serves what it last loaded: samples and log-probs from a copy of the received weights."""

    def __init__(self, sender: FakeSender, model_dir: Path) -> None:
        self.sender = sender
        self.model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.weight_version = 0
        self.initialised = False

    def init_weight_channel(self, receiver_init: dict) -> None:
        assert receiver_init == self.sender.receiver_init, "the conductor must pass the sender's receiver_init unchanged"
        self.initialised = True

    def update_weights(self, handle: dict) -> dict:
        assert self.initialised and self.sender.staged, "update before init, or after the sender released its copies"
        with torch.no_grad():
            params = dict(self.model.named_parameters())
            for name, tensor in self.sender.tensors:
                params[name].copy_(tensor)
        self.weight_version += 1
        checksum = checksum_hex(sum(params_checksum(t.view(-1)) for _, t in self.sender.tensors))  # what it loaded
        return {"bytes": handle["total_bytes"], "seconds": 0.0, "buckets": handle["bucket_count"],
                "weight_version": self.weight_version, "weight_checksum": checksum}

    def sequence_logprobs(self, prompt_ids, response_ids):
        return TorchTrainer.sequence_logprobs(self._as_trainer(), prompt_ids, response_ids)

    def _as_trainer(self):
        view = TorchTrainer.__new__(TorchTrainer)
        view.model, view.device, view.pad_id = self.model, torch.device("cpu"), 0
        return view

    def generate(self, prompt_ids, samples_per_prompt, temperature, max_tokens, top_p=1.0, top_k=0, stop=None):
        gen = torch.Generator().manual_seed(len(prompt_ids))
        samples = []
        for index, prompt in enumerate(prompt_ids):
            for _ in range(samples_per_prompt):
                response = torch.randint(4, 14, (max_tokens,), generator=gen).tolist()
                samples.append(Sample(index, prompt, response, self.sequence_logprobs([prompt], [response])[0]))
        return samples

    def sleep(self) -> MemoryReport:
        return MemoryReport(0, 0.0)

    def wake_up(self, tags=("weights", "kv_cache")) -> MemoryReport:
        return MemoryReport(0, 0.0)


class PullingRolloutEngine(FakeRolloutEngine):
    """Loads through the channel's own receiver, opened from the registry by the name in the
    receiver_init, as vLLM's Seesaw engine does."""

    def init_weight_channel(self, receiver_init: dict) -> None:
        self.receiver = weight_channel(receiver_init["channel"]).open_receiver(
            {k: v for k, v in receiver_init.items() if k != "channel"}, torch.device("cpu"))

    def update_weights(self, handle: dict) -> dict:
        loaded = dict(self.receiver.receive(handle))
        self.receiver.release()
        with torch.no_grad():
            params = dict(self.model.named_parameters())
            for name, tensor in loaded.items():
                params[name].copy_(tensor)
        self.weight_version += 1
        checksum = checksum_hex(sum(params_checksum(t.contiguous().view(-1)) for t in loaded.values()))
        return {"bytes": handle["total_bytes"], "seconds": 0.0, "buckets": handle["bucket_count"],
                "weight_version": self.weight_version, "weight_checksum": checksum}


class RecordingClient:
    """A WorkerClient that calls a service's routes in-process and records (phase, call)."""

    def __init__(self, name: str, routes: dict, log: list) -> None:
        self.name, self.routes, self.log = name, routes, log
        self.conductor: Conductor | None = None

    def call(self, route: str, payload: dict | bytes | None = None, timeout: float = 0.0):
        # as the wire carries them: JSON, or a binary buffer (seesaw.wire) as it is
        payload = payload if isinstance(payload, bytes) else json.loads(json.dumps(payload or {}))
        hint = {"/offload": " keep_weights" if isinstance(payload, dict) and payload.get("keep_weights") else "",
                "/wake_up": " " + " ".join(payload.get("tags", []) if isinstance(payload, dict) else [])}.get(route, "")
        self.log.append((self.conductor.machine.state.value, f"{self.name} {route}{hint}"))
        answer = self.routes[route](payload)
        return answer if isinstance(answer, bytes) else json.loads(json.dumps(answer, default=vars))

    def health(self):
        return {"ready": True, "startable": True}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    tokenizer = build_tokenizer("0123456789=")
    config = LlamaConfig(hidden_size=32, num_attention_heads=2, num_key_value_heads=2, head_dim=16, intermediate_size=64,
                         num_hidden_layers=1, vocab_size=64, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                         eos_token_id=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def services(manifest: dict, model_dir: Path, backend: str, channel: str, log: list):
    spec = manifest["spec"]
    trainer_service = TrainerService.__new__(TrainerService)
    trainer_service.memory = TrainerMemoryState()
    trainer_service.error = None
    trainer_service._start, trainer_service._loaded = threading.Event(), threading.Event()
    trainer_service._loaded.set()  # built, as a CPU trainer is by the time the engines sleep
    trainer_service.env = SimpleNamespace(model_dir=model_dir)
    trainer = (MegatronLikeTrainer if backend == "megatron" else TorchTrainer)(model_dir, spec)
    trainer.pod_data_parallel_ranks = [0]  # what start_trainer gathers: one rank, the whole batch
    pulls = channel == stub_channel.NAME
    sender = weight_channel(channel).open_sender(trainer, "127.0.0.1", [0], 0) if pulls else FakeSender(channel)
    trainer_service.trainer = WeightStaging(trainer, sender, weight_channel(channel))
    rollout_service = RolloutService.__new__(RolloutService)
    rollout_service.engine = (PullingRolloutEngine if pulls else FakeRolloutEngine)(sender, model_dir)
    rollout = RecordingClient("rollout", rollout_service.routes(), log)
    rollout.engine = rollout_service.engine  # for tests that make the engine misbehave
    return RecordingClient("trainer", trainer_service.routes(), log), rollout, trainer_service


def run_conductor(manifest, model_dir, backend, channel, tmp_path):
    from transformers import AutoTokenizer

    log: list = []
    trainer, rollout, service = services(manifest, model_dir, backend, channel, log)
    spec = manifest["spec"]
    spec["checkpoint"]["path"] = str(tmp_path / "checkpoints")
    conductor = Conductor(spec, load_task(spec), AutoTokenizer.from_pretrained(model_dir), trainer, [rollout], tmp_path,
                          log=lambda line: None)
    trainer.conductor = rollout.conductor = conductor
    return conductor, log, service


def by_phase(log: list) -> list[tuple[str, list[str]]]:
    """Consecutive calls grouped by the phase they were made in."""
    groups: list[tuple[str, list[str]]] = []
    for phase, call in log:
        if groups and groups[-1][0] == phase:
            groups[-1][1].append(call)
        else:
            groups.append((phase, [call]))
    return groups


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channel", CHANNELS)
def test_calls_of_each_phase_match_the_documented_table(channel, backend, model_dir, tmp_path):
    manifest = job(channel)
    conductor, log, service = run_conductor(manifest, model_dir, backend, channel, tmp_path)
    summary = conductor.run()
    table = documented_sequences()
    groups = by_phase(log)
    # every engine sleeps before the trainer may allocate on the GPUs they share
    assert groups[0] == ("starting", table["start"])
    assert groups[1] == ("sync", table["first sync"])
    # the eval after the first sync, then per iteration: rollout, train, checkpoint, sync, and an
    # eval (after iteration 1 by everyIterations, after the last as the final evaluation)
    expected = [("eval", table["eval"])] + [
        ("rollout", table["rollout"]), ("train", table["train"]), ("checkpoint", table["checkpoint"]),
        ("sync", table["sync"]), ("eval", table["eval"])] * 2
    assert groups[2:] == expected
    assert service.memory.state.value == "offloaded"  # the trainer left the device to the rollout
    assert summary.sync["max_abs_logprob_diff"] < 1e-5


def test_weights_handle_after_a_full_offload_is_refused_on_the_cpu(model_dir, tmp_path):
    log: list = []
    trainer, _, service = services(job("mooncake-tcp"), model_dir, "torch", "mooncake-tcp", log)
    routes = service.routes()
    for route in ("/offload", "/weights/handle", "/train"):  # nothing before the engines sleep and /start
        with pytest.raises(TrainerStateError, match=rf"{route} needs a started trainer: put the rollout engines to sleep"):
            routes[route]({"keep_weights": True, "bucket_bytes": 1 << 20})
    assert routes["/start"]({})["ready"]
    with pytest.raises(TrainerStateError, match="/start: the trainer has started already"):
        routes["/start"]({})
    routes["/offload"]({"keep_weights": False})
    with pytest.raises(TrainerStateError, match=r"/weights/handle needs the trainer onloaded or weights_only, but it is offloaded"):
        routes["/weights/handle"]({"bucket_bytes": 1 << 20})
    with pytest.raises(TrainerStateError, match="/train needs the trainer onloaded"):
        routes["/train"](wire.encode_samples([], {"tau": 0.1, "prompts": 0}))
    routes["/onload"]({})
    routes["/offload"]({"keep_weights": True})
    assert routes["/weights/handle"]({"bucket_bytes": 1 << 20})["total_bytes"] > 0
    with pytest.raises(TrainerStateError, match="/checkpoint/save needs the trainer onloaded"):
        routes["/checkpoint/save"]({"path": str(tmp_path / "x.pt"), "iteration": 1})


def test_a_corrupted_transfer_fails_the_sync_naming_both_checksums(model_dir, tmp_path):
    manifest = job("mooncake-tcp")
    conductor, _, service = run_conductor(manifest, model_dir, "torch", "mooncake-tcp", tmp_path)
    sender = service.trainer.sender
    real_stage = sender.stage

    def corrupted(named, bucket_bytes, declared=None):
        handle = real_stage(named, bucket_bytes, declared)
        sender.tensors = [(n, t + 0.5) for n, t in sender.tensors]  # other bytes arrive than were staged
        return handle

    sender.stage = corrupted
    with pytest.raises(PhaseError, match=r"rollout loaded weights with checksum [0-9a-f]{16}, the trainer staged "
                                         r"[0-9a-f]{16}: the transfer corrupted or missed tensors") as failed:
        conductor.run()
    assert not caused_by(failed.value, DeterministicFailure), "a transfer error may pass on a retry: the gang restarts"


def test_an_engine_serving_other_weights_fails_the_sync_naming_the_difference(model_dir, tmp_path):
    manifest = job("mooncake-tcp")
    conductor, _, service = run_conductor(manifest, model_dir, "torch", "mooncake-tcp", tmp_path)
    engine = conductor.pods[0].rollouts[0]
    update = engine.routes["/weights/update"]

    def misloaded(body):  # the right bytes arrived, but the engine computes with other weights (a loader bug)
        result = update(body)
        with torch.no_grad():
            next(iter(engine.engine.model.parameters())).add_(0.5)
        return result

    engine.routes["/weights/update"] = misloaded
    with pytest.raises(PhaseError, match=r"log-probs on the probe batch differ from the trainer's by .* float32\) "
                                         r"although it loaded exactly the bytes the trainer sent") as failed:
        conductor.run()
    # the same bytes into the same engine compute the same wrong thing after a restart
    assert caused_by(failed.value, DeterministicFailure) and "a restart would fail the same way" in str(failed.value)


def test_a_stale_engine_fails_the_sync_naming_the_weight_version(model_dir, tmp_path):
    conductor, _, service = run_conductor(job("mooncake-tcp"), model_dir, "torch", "mooncake-tcp", tmp_path)
    rollout_routes = conductor.pods[0].rollouts[0].routes
    update = rollout_routes["/weights/update"]
    rollout_routes["/weights/update"] = lambda body: dict(update(body), weight_version=0)
    with pytest.raises(PhaseError, match=r"weight version 0, expected 1"):
        conductor.run()


def test_documented_table_names_only_routes_the_workers_serve():
    served = {f"trainer {r}" for r in TrainerService.routes(TrainerService.__new__(TrainerService))}
    served |= {f"rollout {r}" for r in RolloutService.routes(RolloutService.__new__(RolloutService))}
    for phase, calls in documented_sequences().items():
        for call in calls:
            assert re.sub(r" (keep_weights|weights|kv_cache)$", "", call) in served, f"{phase}: {call}"


def test_a_fresh_start_on_another_runs_checkpoints_is_refused_before_any_call(model_dir, tmp_path):
    from seesaw.checkpoint_engine import checkpoints

    manifest = job("mooncake-tcp")
    conductor, log, _ = run_conductor(manifest, model_dir, "torch", "mooncake-tcp", tmp_path)
    staging = checkpoints.staging_dir(conductor.checkpoint_root, 7)
    checkpoints.write_state(staging, {"iteration": 7})
    checkpoints.commit(staging)
    with pytest.raises(checkpoints.CheckpointError, match=r"spec\.checkpoint\.path .*checkpoints already holds "
                       r"checkpoints of an earlier run \(latest: iteration-000007\).*--resume-from"):
        conductor.run()
    assert log == [], "nothing was started, loaded or written"
