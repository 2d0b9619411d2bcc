"""The trainer container's launcher: one rank per GPU, each told its local rank as torchrun would."""
from seesaw import pod_contract as pc
from seesaw.spec import trainer_processes_per_pod, validate_manifest
from seesaw.trainer.launch import rank_env


def test_each_rank_knows_its_local_rank_and_shares_the_pods_threads():
    envs = [rank_env({pc.CPU_THREADS: "8", pc.POD_INDEX: "1"}, r, 4) for r in range(4)]
    assert [(e["LOCAL_RANK"], e["LOCAL_WORLD_SIZE"]) for e in envs] == [(str(r), "4") for r in range(4)]
    assert {(e[pc.CPU_THREADS], e["OMP_NUM_THREADS"], e[pc.POD_INDEX]) for e in envs} == {("2", "2", "1")}
    assert "OMP_NUM_THREADS" not in rank_env({}, 0, 2), "no thread budget set: none invented"


def test_one_rank_per_gpu_and_one_on_the_cpu():
    def spec(gpus):
        return validate_manifest({"apiVersion": "seesaw.dev/v1alpha1", "kind": "RLJob", "metadata": {"name": "t"},
                                  "spec": {"model": {"generate": {}}, "cluster": {"gpusPerNode": gpus}}})["spec"]
    assert trainer_processes_per_pod(spec(8)) == 8 and trainer_processes_per_pod(spec(0)) == 1
