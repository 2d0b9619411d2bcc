"""Backend selection: `auto` resolves from the hardware; impossible combinations name the field."""
from __future__ import annotations

import pytest

from seesaw.backend_selection import BackendChoice, Hardware, choose_backends
from seesaw.spec import SpecError, validate_manifest

CPU = Hardware()
ONE_GPU = Hardware(gpu_count=1, shared_gpu=True, gpu_model="NVIDIA H100")
EIGHT_GPUS_RDMA = Hardware(gpu_count=8, shared_gpu=False, rdma_devices=("mlx5_0",))
EIGHT_SHARED = Hardware(gpu_count=8, shared_gpu=True, rdma_devices=("mlx5_0",))


def job(**spec) -> dict:
    spec.setdefault("model", {"generate": {}})
    return validate_manifest({"apiVersion": "seesaw.dev/v1alpha1", "kind": "RLJob", "metadata": {"name": "t"}, "spec": spec})


def test_cpu_machine_gets_torch_vllm_cpu_and_mooncake_tcp() -> None:
    choice = choose_backends(job(cluster={"gpusPerNode": 0}), CPU)
    assert choice == BackendChoice("torch", "vllm-cpu", "mooncake-tcp")


def test_gpu_spec_on_cpu_machine_falls_back_to_cpu_backends_under_auto() -> None:
    assert choose_backends(job(), CPU) == BackendChoice("torch", "vllm-cpu", "mooncake-tcp")


def test_colocated_gpu_gets_megatron_vllm_gpu_and_cuda_ipc() -> None:
    choice = choose_backends(job(cluster={"gpusPerNode": 1}), ONE_GPU)
    assert choice == BackendChoice("megatron", "vllm-gpu", "cuda-ipc")
    assert any("share the GPU" in r for r in choice.reasons)


def test_unshared_gpus_with_rdma_get_mooncake_rdma() -> None:
    assert choose_backends(job(), EIGHT_GPUS_RDMA).weight_channel == "mooncake-rdma"


def test_unshared_gpus_without_rdma_get_mooncake_tcp() -> None:
    assert choose_backends(job(), Hardware(gpu_count=8)).weight_channel == "mooncake-tcp"


def test_explicit_choices_are_kept_when_possible() -> None:
    spec = job(trainer={"backend": "torch"}, weightSync={"channel": "mooncake-tcp"})
    assert choose_backends(spec, EIGHT_SHARED) == BackendChoice("torch", "vllm-gpu", "mooncake-tcp")
    assert choose_backends(job(weightSync={"channel": "mooncake-rdma"}), EIGHT_SHARED).weight_channel == "mooncake-rdma"


def test_accepts_the_spec_alone() -> None:
    assert choose_backends(job()["spec"], ONE_GPU).trainer == "megatron"


@pytest.mark.parametrize(
    "spec, hardware, field, words",
    [
        (dict(weightSync={"channel": "cuda-ipc"}), CPU, "spec.weightSync.channel", "found no GPU"),
        (dict(weightSync={"channel": "cuda-ipc"}), EIGHT_GPUS_RDMA, "spec.weightSync.channel", "do not share"),
        (dict(trainer={"backend": "torch"}, weightSync={"channel": "cuda-ipc"}), ONE_GPU, "spec.weightSync.channel", "megatron trainer"),
        (dict(weightSync={"channel": "mooncake-rdma"}), ONE_GPU, "spec.weightSync.channel", "RDMA device"),
        (dict(trainer={"tensorParallel": 8}), ONE_GPU, "spec.trainer.tensorParallel", "has 1 GPU"),
        (dict(rollout={"tensorParallel": 2}, cluster={"gpusPerNode": 2}), ONE_GPU, "spec.rollout.tensorParallel", "got 2"),
        (dict(trainer={"tensorParallel": 2}, cluster={"gpusPerNode": 2}), CPU, "spec.trainer.backend", "auto, with 0 GPU(s) here"),
        (dict(trainer={"pipelineParallel": 2}), CPU, "spec.trainer.backend", "pipelineParallel 2"),
    ],
)
def test_impossible_combinations_name_the_field(spec: dict, hardware: Hardware, field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        choose_backends(job(**spec), hardware)
    assert err.value.field == field
    assert words in str(err.value)


def test_detect_reports_what_this_machine_has(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    hw = Hardware.detect()
    assert hw.gpu_count == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert hw.shared_gpu == (hw.gpu_count > 0)
    monkeypatch.setenv("SEESAW_COLOCATED", "0")
    assert Hardware.detect().shared_gpu is False


def test_detect_lists_rdma_devices(tmp_path) -> None:
    from seesaw.backend_selection import _rdma_devices

    (tmp_path / "mlx5_1").mkdir()
    (tmp_path / "mlx5_0").mkdir()
    assert _rdma_devices(str(tmp_path)) == ("mlx5_0", "mlx5_1")
    assert _rdma_devices(str(tmp_path / "absent")) == ()


@pytest.mark.parametrize("cluster, hardware", [({"gpusPerNode": 0}, ONE_GPU), ({}, CPU)])
def test_megatron_without_gpus_runs_on_the_cpu_and_says_so(cluster, hardware) -> None:
    choice = choose_backends(job(trainer={"backend": "megatron"}, cluster=cluster)["spec"], hardware)
    assert (choice.trainer, choice.rollout, choice.weight_channel) == ("megatron", "vllm-cpu", "mooncake-tcp")
    assert any("megatron on the CPU" in reason for reason in choice.reasons), choice.reasons
