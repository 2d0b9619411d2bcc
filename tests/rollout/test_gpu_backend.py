"""vLLM GPU rollout: engine arguments, channel -> transfer engine, and the worker-side engine's registration."""
from __future__ import annotations

import subprocess
import sys

import pytest

from seesaw.rollout.gpu_backend import engine_args, transfer_backend
from seesaw.spec import job_spec

SPEC = job_spec({"model": {"dtype": "bfloat16"}, "weightSync": {"channel": "cuda-ipc"},
                 "rollout": {"maxModelLen": 2048, "tensorParallel": 2, "gpuMemoryUtilization": 0.5}})


def test_engine_args_turn_on_sleep_mode_dummy_weights_and_the_worker_extension() -> None:
    args = engine_args("/models/m", SPEC, "cuda-ipc", seed=3)
    assert args["enable_sleep_mode"] and args["load_format"] == "dummy"
    assert args["tensor_parallel_size"] == 2 and args["gpu_memory_utilization"] == 0.5
    assert args["weight_transfer_config"] == {"backend": "seesaw-cuda-ipc"}
    assert args["worker_extension_cls"] == "seesaw.rollout.worker_extension.SeesawWorkerExtension"


def test_channels_map_to_transfer_engines() -> None:
    assert transfer_backend("mooncake-rdma") == "seesaw-mooncake"
    with pytest.raises(ValueError, match="spec.weightSync.channel"):
        transfer_backend("carrier-pigeon")


def test_worker_extension_registers_the_cuda_ipc_engine_inside_vllm() -> None:
    code = """
import vllm  # as in a worker: vLLM is loaded before the extension module
import seesaw.rollout.worker_extension as ext
from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory as F
assert ext.CUDA_IPC_BACKEND in F._registry and ext.MOONCAKE_BACKEND in F._registry
engine = F._registry[ext.CUDA_IPC_BACKEND]()
info = engine.update_info_cls(handle={"channel": "cuda-ipc", "buckets": []})
assert info.handle["channel"] == "cuda-ipc"
print("OK")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert done.stdout.strip().endswith("OK"), done.stderr[-3000:]
