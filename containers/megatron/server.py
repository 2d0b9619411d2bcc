"""A trainer rank. Local rank 0 serves the trainer backend to the pod's checkpoint engine over
localhost HTTP; the pod's other ranks (one per further GPU) follow it (seesaw.trainer.lockstep)."""
from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable

import torch

from seesaw import pod_contract, wire
import seesaw.trainer  # noqa: F401  (registers the trainer backends)
from seesaw.backend_selection import VLLM_GPU, BackendChoice, Hardware, choose_backends
from seesaw.checkpoint_engine.weights import weight_channel
from seesaw.interfaces import backend
from seesaw.rl.training import BatchShare
from seesaw.spec import rollout_engines_per_pod
from seesaw.rpc import serve
from seesaw.model.export import export_hf_model
from seesaw.trainer import distributed
from seesaw.trainer.distributed import join_trainer_group
from seesaw.trainer.lockstep import PodLeader, follow
from seesaw.trainer.weight_staging import WeightStaging
from seesaw.trainer.memory_state import TrainerMemory, TrainerMemoryState
from seesaw.worker_env import WorkerEnv, worker_env

log = logging.getLogger("seesaw.trainer")


def start_trainer(env: WorkerEnv, wait_for_start: Callable[[], None]) -> tuple[Any, BackendChoice]:
    """Join the job's trainer group and build this rank's trainer backend.

    On a GPU it shares with vLLM the build waits for `wait_for_start`: the engines start and
    sleep first (docs/ARCHITECTURE.md, "Starting on a shared GPU"). On the CPU nothing is
    reserved, so the build overlaps the engines' start."""
    choice = choose_backends(env.spec, Hardware.detect())
    log.info("backends: %s (%s)", choice, "; ".join(choice.reasons))
    device = "cuda" if choice.trainer == "megatron" and choice.rollout == VLLM_GPU else "cpu"
    rank, world = join_trainer_group(device, env.spec["timeouts"]["startupSeconds"])
    log.info("trainer rank %d of %d", rank, world)
    if device == "cuda":
        log.info("waiting for the rollout engines to sleep before allocating on the GPU")
        wait_for_start()
    trainer = backend("trainer", choice.trainer)(env.model_dir, env.spec, device=device)
    # the leader tells the conductor which data-parallel shares its pod's ranks train on, so
    # the pod is sent those alone
    trainer.pod_data_parallel_ranks = distributed.gather_on_pod_leader(trainer.data_parallel_rank)
    return trainer, choice


def hear_start() -> None:
    """A follower rank: its pod's leader says when the GPUs are free to allocate on."""
    message = distributed.hear_pod_leader()
    if message[0] != "start":
        raise ValueError(f"the pod leader asked for {message[0]!r} before the trainer started")


def staging_trainer(trainer: Any, choice: BackendChoice, env: WorkerEnv) -> WeightStaging:
    """The backend with this rank's weight sender: the channel says which ranks stage."""
    spec = env.spec
    # every rollout engine's tensor-parallel group: the GPUs a copy may be staged on
    rollout_gpus = list(range(rollout_engines_per_pod(spec) * spec["rollout"]["tensorParallel"]))
    channel = weight_channel(choice.weight_channel)
    return WeightStaging(trainer, channel.open_sender(trainer, env.pod_ip, rollout_gpus, distributed.local_rank()), channel)


class TrainerService:
    """Routes of the trainer container; the model loads in the background so /healthz answers early."""

    def __init__(self) -> None:
        self.env = worker_env()
        self.trainer = None
        self.error: str | None = None
        self.memory = TrainerMemoryState()
        self._start = threading.Event()  # set by /start
        self._loaded = threading.Event()  # the backend is built, or failed to build
        threading.Thread(target=self._load, daemon=True).start()

    def _released(self) -> None:
        self._start.wait()
        distributed.tell_pod(("start", (), {}))  # the followers build with the leader

    def _load(self) -> None:
        try:
            trainer, choice = start_trainer(self.env, self._released)
            # the pod's other ranks make each call with it
            self.trainer = PodLeader(staging_trainer(trainer, choice, self.env))
            log.info("trainer ready: %s backend, %s weight channel", choice.trainer, choice.weight_channel)
        except Exception as err:  # reported through /healthz so the conductor can say why
            log.exception("trainer failed to start")
            self.error = f"{type(err).__name__}: {err}"
        finally:
            self._loaded.set()

    def health(self) -> dict[str, Any]:
        started = self.memory.state is not TrainerMemory.NOT_STARTED
        layout = self.trainer.training_layout if self.trainer is not None else None
        # startable: the conductor may call /start (once the engines on its GPUs sleep)
        return {"ready": started, "startable": self.error is None and not started, "error": self.error,
                "memory": self.memory.state.value,
                "ranks": distributed.world_size(), "local_ranks": distributed.local_world_size(),
                "layout": layout,
                # the data-parallel ranks on this pod, of how many: the shares of a batch it is sent
                "data_parallel": {"ranks": sorted(set(self.trainer.pod_data_parallel_ranks)), "size": layout["dp"]}
                if layout else None}

    def start(self, _: dict[str, Any]) -> dict[str, Any]:
        """Build the backend on the device (on the CPU it is built already) and report it."""
        self._start.set()
        self._loaded.wait()
        if self.error:
            raise RuntimeError(f"the trainer failed to start: {self.error}")
        self.memory.started()
        return self.health()

    def weights_handle(self, body: dict[str, Any]) -> dict[str, Any]:
        """Stage the weights for the receivers, on every rank the channel asks to."""
        return self.trainer.stage_weights(int(body["bucket_bytes"]))

    def weights_release(self, _: dict[str, Any]) -> dict[str, Any]:
        self.trainer.release_weights()
        return {"ok": True}

    def train(self, body: bytes) -> dict[str, Any]:
        """The pod's part of the batch (seesaw.wire: its ranks' prompts, each with its position
        in the whole batch, whose size the metadata gives)."""
        samples, meta, positions = wire.decode_samples(body, as_lists=True)
        share = BatchShare.of(samples, positions, int(meta["prompts"]))
        return vars(self.trainer.train_step(share, float(meta["tau"])))

    def logprobs(self, body: dict[str, Any]) -> list[list[float]]:
        return self.trainer.sequence_logprobs(body["prompt_ids"], body["response_ids"])

    def offload(self, body: dict[str, Any]) -> dict[str, Any]:
        keep_weights = bool(body.get("keep_weights", False))
        self.memory.offloaded(keep_weights)  # checked before the backend moves anything
        return vars(self.trainer.offload(keep_weights=keep_weights))

    def onload(self, _: dict[str, Any]) -> dict[str, Any]:
        report = vars(self.trainer.onload())
        self.memory.onloaded()
        return report

    def save(self, body: dict[str, Any]) -> dict[str, Any]:
        self.trainer.save_checkpoint(body["path"], int(body["iteration"]))
        return {"path": body["path"]}

    def load(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"iteration": self.trainer.load_checkpoint(body["path"])}

    def export(self, body: dict[str, Any]) -> dict[str, Any]:
        """The policy as a Hugging Face model directory, written by rank 0; every rank reads
        its tensors (Megatron gathers its shards collectively)."""
        tensors = self.trainer.hf_state()
        if distributed.rank() != 0:
            for _ in tensors:
                pass
            return {"path": None}
        return {"path": str(export_hf_model(tensors, self.env.model_dir, body["path"]))}

    def routes(self) -> dict[str, Any]:
        routes = {
            "/start": self.start, "/weights/handle": self.weights_handle, "/weights/release": self.weights_release, "/train": self.train,
            "/logprobs": self.logprobs, "/offload": self.offload, "/onload": self.onload,
            "/checkpoint/save": self.save, "/checkpoint/load": self.load, "/export": self.export,
        }
        return {route: self._guarded(route, handler) for route, handler in routes.items()}

    def _guarded(self, route: str, handler):
        def call(body: dict[str, Any]) -> Any:
            self.memory.require(route)
            return handler(body)
        return call


def main() -> None:
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s trainer local-rank {distributed.local_rank()} %(levelname)s %(message)s")
    torch.set_num_threads(int(os.environ.get(pod_contract.CPU_THREADS, 0)) or max(1, os.cpu_count() or 1))
    if distributed.local_rank() != 0:  # a follower: the pod's leader tells it each call
        env = worker_env()
        trainer, choice = start_trainer(env, hear_start)
        follow(staging_trainer(trainer, choice, env))
        return
    service = TrainerService()
    serve(service.routes(), service.env.trainer_port, service.health, service.env.listen_hosts)


if __name__ == "__main__":
    main()
