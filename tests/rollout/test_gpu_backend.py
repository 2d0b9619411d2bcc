"""vLLM GPU rollout: engine arguments, and the worker-side engine's registration."""
from __future__ import annotations

import subprocess
import sys

from seesaw.rollout.gpu_backend import engine_args
from seesaw.spec import job_spec

SPEC = job_spec({"model": {"dtype": "bfloat16"}, "weightSync": {"channel": "cuda-ipc"},
                 "rollout": {"maxModelLen": 2048, "tensorParallel": 2, "gpuMemoryUtilization": 0.5}})


def test_engine_args_turn_on_sleep_mode_dummy_weights_and_the_worker_extension() -> None:
    args = engine_args("/models/m", SPEC, seed=3)
    assert args["enable_sleep_mode"] and args["load_format"] == "dummy"
    assert args["tensor_parallel_size"] == 2 and args["gpu_memory_utilization"] == 0.5
    assert args["weight_transfer_config"] == {"backend": "seesaw"}  # one engine, whatever the channel
    assert args["worker_extension_cls"] == "seesaw.rollout.worker_extension.SeesawWorkerExtension"


def test_worker_extension_registers_the_engine_inside_vllm() -> None:
    code = """
import vllm  # as in a worker: vLLM is loaded before the extension module
import seesaw.rollout.worker_extension
from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory as F
from seesaw.checkpoint_engine.weights import VLLM_ENGINE
engine = F._registry[VLLM_ENGINE]()
info = engine.update_info_cls(handle={"channel": "cuda-ipc", "buckets": []})
assert info.handle["channel"] == "cuda-ipc"
init = engine.parse_init_info(None, {"channel": "mooncake-tcp", "capacity_bytes": 8, "hostname": "h"})
assert (init.channel, init.options) == ("mooncake-tcp", {"capacity_bytes": 8, "hostname": "h"})
print("OK")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert done.stdout.strip().endswith("OK"), done.stderr[-3000:]
