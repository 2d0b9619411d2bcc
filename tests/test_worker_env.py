"""Containers of a pod find their job, model and peers from the environment."""
import threading

import yaml

from pod_helpers import tiny_manifest
from seesaw.worker_env import worker_env


def test_a_generated_model_is_built_once_in_the_shared_run_volume(tmp_path, monkeypatch):
    manifest = tiny_manifest()
    manifest["spec"]["model"]["generate"]["sftSteps"] = 2
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(manifest))
    monkeypatch.setenv("SEESAW_JOB_CONFIG", str(job))
    monkeypatch.setenv("SEESAW_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("SEESAW_MODEL_DIR", raising=False)
    found = []
    # the trainer and rollout containers start at the same time
    threads = [threading.Thread(target=lambda: found.append(worker_env().model_dir)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 2 and found[0] == found[1]
    models = [p for p in (tmp_path / "run" / "models").iterdir() if not p.name.startswith(".")]
    assert len(models) == 1 and (models[0] / "config.json").is_file()
    assert worker_env().trainer_url.startswith("http://127.0.0.1:")
