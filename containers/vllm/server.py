"""The rollout container: serves a live vLLM engine to the checkpoint engine over localhost HTTP."""
from __future__ import annotations

import logging
import threading
from typing import Any

import seesaw.rollout  # noqa: F401  (registers the rollout backends)
from seesaw import wire
from seesaw.backend_selection import Hardware, choose_backends
from seesaw.interfaces import backend
from seesaw.rpc import serve
from seesaw.worker_env import worker_env

log = logging.getLogger("seesaw.rollout")


class RolloutService:
    def __init__(self) -> None:
        self.env = worker_env()
        self.engine = None
        self.error: str | None = None
        threading.Thread(target=self._load, daemon=True).start()

    def _load(self) -> None:
        try:
            choice = choose_backends(self.env.spec, Hardware.detect())
            # every engine of the gang samples from its own seed
            # every engine of the job samples its own stream: gang pods first, then the replicas
            pod = self.env.pod_index if self.env.replica is None else self.env.num_pods + self.env.replica
            seed = self.env.spec["rl"]["seed"] + pod * self.env.rollout_engines + self.env.rollout_engine
            self.engine = backend("rollout", choice.rollout)(self.env.model_dir, self.env.spec, seed=seed)
            log.info("rollout engine ready: %s, %s weight channel", choice.rollout, choice.weight_channel)
        except Exception as err:
            log.exception("rollout engine failed to start")
            self.error = f"{type(err).__name__}: {err}"

    def health(self) -> dict[str, Any]:
        return {"ready": self.engine is not None, "error": self.error,
                "weight_version": self.engine.weight_version if self.engine is not None else None}

    def generate(self, body: dict[str, Any]) -> bytes:
        """The samples as one buffer of arrays (seesaw.wire), not JSON lists."""
        samples = self.engine.generate(body["prompt_ids"], int(body["n"]), float(body["temperature"]), int(body["max_tokens"]),
                                       top_p=float(body["top_p"]), top_k=int(body.get("top_k", 0)),
                                       stop=list(body.get("stop", [])))
        return wire.encode_samples(samples)

    def logprobs(self, body: dict[str, Any]) -> list[list[float]]:
        return self.engine.sequence_logprobs(body["prompt_ids"], body["response_ids"])

    def init_weights(self, body: dict[str, Any]) -> dict[str, Any]:
        self.engine.init_weight_channel(body["receiver_init"])
        return {"ok": True}

    def update_weights(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.engine.update_weights(body["handle"])

    def sleep(self, _: dict[str, Any]) -> dict[str, Any]:
        return vars(self.engine.sleep())

    def wake_up(self, body: dict[str, Any]) -> dict[str, Any]:
        return vars(self.engine.wake_up(body.get("tags", ("weights", "kv_cache"))))

    def routes(self) -> dict[str, Any]:
        return {
            "/generate": self.generate, "/logprobs": self.logprobs, "/weights/init": self.init_weights,
            "/weights/update": self.update_weights, "/sleep": self.sleep, "/wake_up": self.wake_up,
        }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rollout %(levelname)s %(message)s")
    service = RolloutService()
    serve(service.routes(), service.env.rollout_port, service.health, service.env.listen_hosts)


if __name__ == "__main__":
    main()
