"""`seesaw run` reads a manifest's relative paths against the manifest's folder, and names a
path that is not there before any worker starts."""
import subprocess
import sys
from pathlib import Path

import yaml

from pod_helpers import tiny_manifest
from seesaw.local.paths import manifest_folder, resolve_paths

SEESAW = str(Path(sys.executable).parent / "seesaw")


def test_relative_paths_start_from_the_manifests_folder(tmp_path):
    spec = {"prompts": {"source": "data/p.jsonl"}, "model": {"path": "../models/m"}}
    resolve_paths(spec, tmp_path / "jobs")
    assert spec == {"prompts": {"source": str(tmp_path / "jobs" / "data" / "p.jsonl")},
                    "model": {"path": str(tmp_path / "models" / "m")}}


def test_a_path_inside_a_claim_and_a_builtin_task_are_left_alone(tmp_path):
    spec = {"prompts": {"source": "builtin:reverse"}, "model": {"pvc": "models", "path": "Qwen2.5-7B"}}
    resolve_paths(spec, tmp_path)
    assert spec == {"prompts": {"source": "builtin:reverse"}, "model": {"pvc": "models", "path": "Qwen2.5-7B"}}


def test_a_manifest_not_read_from_a_file_starts_from_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.yaml").write_text("")
    assert manifest_folder("job.yaml") == tmp_path
    assert manifest_folder("<long2short tiny>") == tmp_path


def run_elsewhere(tmp_path, spec_patch: dict) -> subprocess.CompletedProcess:
    manifest = tiny_manifest()
    manifest["spec"].update(spec_patch)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "job.yaml").write_text(yaml.safe_dump(manifest))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return subprocess.run([SEESAW, "run", str(jobs / "job.yaml"), "--workdir", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=120, cwd=elsewhere)


def test_a_missing_model_directory_is_named_before_any_worker_starts(tmp_path):
    result = run_elsewhere(tmp_path, {"model": {"path": "models/smollm2", "dtype": "float32"}})
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"spec.model.path: {tmp_path / 'jobs' / 'models' / 'smollm2'} does not exist" in result.stderr
    assert "trainer" not in result.stdout  # no pod was started


def test_a_missing_prompt_file_is_named_with_the_path_it_was_read_as(tmp_path):
    result = run_elsewhere(tmp_path, {"prompts": {"source": "data/missing.jsonl"}})
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"spec.prompts.source: expected builtin:<task>, a .jsonl or .parquet file or a saved Hugging Face dataset folder; '{tmp_path / 'jobs' / 'data' / 'missing.jsonl'}'" in result.stderr
