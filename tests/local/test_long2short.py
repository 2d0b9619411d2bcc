"""`seesaw long2short`: each method's job, their order, the merge, the table and the plot."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from seesaw.local.long2short import (METHODS, Point, Settings, StageFailed, long2short, merge_model_dirs, plot, read_points,
                                     seeds_table, stage_manifest, stage_name, table, write_report)
from seesaw.spec import SpecError, load_manifest

ROOT = Path(__file__).resolve().parents[2]


def long_manifest() -> dict:
    return load_manifest(ROOT / "examples" / "tiny-add-long.yaml")


def test_each_method_is_an_rljob_from_the_long_model():
    long = long_manifest()
    jobs = {m: stage_manifest(long, m, "/models/long", Settings(iterations=7, rounds=2, prompts=99, epochs=3,
                                                                     learning_rate=0.002))
            for m in METHODS}
    for method, job in jobs.items():
        assert job["metadata"]["name"] == f"tiny-add-long-{method}"
        assert job["spec"]["model"] == {"path": "/models/long", "dtype": "float32"}
    assert jobs["shortest-rejection"]["spec"]["rl"]["objective"]["type"] == "shortest-rejection"
    assert jobs["dpo"]["spec"]["rl"]["objective"] == {"type": "dpo", "dpo": {"beta": 0.1, "lengthRatio": 1.5}}
    assert jobs["rl"]["spec"]["rl"]["iterations"] == 7 and jobs["merge"]["spec"]["rl"]["iterations"] == 0
    for method in ("shortest-rejection", "dpo"):  # rounds of sampling from the then-current policy, then epochs
        assert {k: jobs[method]["spec"]["rl"][k] for k in ("iterations", "promptsPerIteration", "epochsPerIteration")} \
            == {"iterations": 2, "promptsPerIteration": 99, "epochsPerIteration": 3}
    assert jobs["rl"]["spec"]["rl"]["epochsPerIteration"] == 1
    assert {job["spec"]["trainer"]["optimizer"]["learningRate"] for job in jobs.values()} == {0.002}
    # without a rate given, DPO trains at a tenth of the long job's, long2short RL at 0.4 of it
    default = {m: stage_manifest(long, m, "/models/long")["spec"]["trainer"]["optimizer"]["learningRate"] for m in METHODS}
    assert default["shortest-rejection"] == 0.0005
    assert default["dpo"] == pytest.approx(0.1 * 0.0005) and default["rl"] == pytest.approx(0.4 * 0.0005)
    rl = jobs["rl"]["spec"]
    assert rl["rl"]["objective"]["type"] == "mirror-descent"
    assert rl["rl"]["lengthPenalty"]["weight"] == 0.5
    assert rl["rollout"]["maxTokens"] == int(long["spec"]["rollout"]["maxTokens"] * 0.75)
    # the other methods train without the length penalty: their own selection shortens
    assert jobs["dpo"]["spec"]["rl"]["lengthPenalty"]["weight"] == 0.0
    assert long["spec"]["model"]["generate"]  # the template is not changed


def test_stage_names_stay_dns_labels():
    name = stage_name("a" * 52, "shortest-rejection")
    assert len(name) <= 52 and name.endswith("-shortest-rejection")


def test_merge_averages_two_model_directories(tmp_path):
    for name, value in (("long", 2.0), ("short", 0.0)):
        (tmp_path / name).mkdir()
        save_file({"w": torch.full((2,), value)}, tmp_path / name / "model.safetensors")
        (tmp_path / name / "config.json").write_text(json.dumps({"from": name}))
    merged = merge_model_dirs(tmp_path / "long", tmp_path / "short", tmp_path / "merged", long_weight=0.75)
    assert load_file(merged / "model.safetensors")["w"].tolist() == [1.5, 1.5]
    assert json.loads((merged / "config.json").read_text()) == {"from": "long"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="--short-model"):
        merge_model_dirs(tmp_path / "long", tmp_path / "empty", tmp_path / "again", 0.5)


def fake_model(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    save_file({"w": torch.ones(1)}, path / "model.safetensors")
    (path / "config.json").write_text("{}")
    return path


def summary(accuracy: float, tokens: float, exported: str, before=(0.9, 40.0)) -> dict:
    return {"accuracy_before": before[0], "accuracy_after": accuracy, "greedy_accuracy_before": before[0],
            "greedy_accuracy_after": accuracy, "mean_tokens_before": before[1], "mean_tokens_after": tokens,
            "greedy_mean_tokens_before": before[1], "greedy_mean_tokens_after": tokens, "iterations": 3,
            "exported_model": exported}


def test_the_methods_run_in_order_and_merge_uses_the_shortest_rejection_policy(tmp_path):
    ran = []

    def fake_run_job(manifest, args):
        method = manifest["metadata"]["name"].rsplit("tiny-add-long-", 1)[1]
        ran.append((method, manifest["spec"]["model"]["path"]))
        Path(args.summary_json).write_text(json.dumps(summary(0.8, 20.0, str(tmp_path / f"{method}-model"))))
        return 0

    for name in ("long", "shortest-rejection-model"):
        fake_model(tmp_path / name)
    points = long2short(long_manifest(), tmp_path / "runs", tmp_path / "out", ["merge", "dpo", "shortest-rejection"],
                        Settings(iterations=3), long_model=tmp_path / "long", run_job=fake_run_job, log=lambda line: None)
    assert [m for m, _ in ran] == ["shortest-rejection", "dpo", "merge"]
    assert ran[0][1] == ran[1][1] == str(tmp_path / "long")
    assert ran[2][1] == str(tmp_path / "out" / "merged-model")
    assert [p.policy for p in points] == ["long-CoT", "shortest-rejection", "dpo", "merge"]
    assert (points[0].accuracy, points[0].mean_tokens) == (0.9, 40.0)  # measured by the first job, before it trained
    assert "0.50x" in table(points)
    assert plot(points, tmp_path / "out" / "l2s.png", "t").stat().st_size > 1000


def test_a_merge_alone_measures_the_long_policy_with_its_own_job(tmp_path):
    ran = []

    def fake_run_job(manifest, args):
        ran.append((manifest["metadata"]["name"], manifest["spec"]["rl"]["iterations"]))
        Path(args.summary_json).write_text(json.dumps(summary(0.7, 30.0, "")))
        return 0

    for name in ("long", "short"):
        fake_model(tmp_path / name)
    points = long2short(long_manifest(), tmp_path / "runs", tmp_path / "out", ["merge"], long_model=tmp_path / "long",
                        short_model=tmp_path / "short", run_job=fake_run_job, log=lambda line: None)
    assert ran == [("tiny-add-long-evaluate", 0), ("tiny-add-long-merge", 0)]
    assert [p.policy for p in points] == ["long-CoT", "merge"] and points[0].accuracy == 0.7


def test_relative_paths_reach_the_jobs_absolute(tmp_path, monkeypatch):
    # the jobs' containers do not share the command's working directory
    ran = []

    def fake_run_job(manifest, args):
        ran.append(manifest["spec"]["model"]["path"])
        Path(args.summary_json).write_text(json.dumps(summary(0.7, 30.0, "")))
        return 0

    for name in ("long", "short"):
        fake_model(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    long2short(long_manifest(), Path("runs"), Path("out"), ["merge"], long_model=Path("long"),
               short_model=Path("short"), run_job=fake_run_job, log=lambda line: None)
    assert ran == [str(tmp_path / "long"), str(tmp_path / "out" / "merged-model")]


def test_a_failed_job_a_missing_model_or_a_merge_without_a_short_model_is_named(tmp_path):
    with pytest.raises(SpecError, match="--long-model: .* has no config.json"):
        long2short(long_manifest(), tmp_path, tmp_path / "out", ["dpo"], long_model=tmp_path / "nowhere",
                   run_job=lambda m, a: 0, log=lambda line: None)
    fake_model(tmp_path)
    with pytest.raises(SpecError, match="--short-model"):
        long2short(long_manifest(), tmp_path, tmp_path / "out", ["merge"], long_model=tmp_path,
                   run_job=lambda m, a: 0, log=lambda line: None)
    with pytest.raises(StageFailed, match="tiny-add-long-dpo job failed"):
        long2short(long_manifest(), tmp_path, tmp_path / "out", ["dpo"], long_model=tmp_path,
                   run_job=lambda m, a: 1, log=lambda line: None)
    with pytest.raises(SpecError, match="--methods"):
        long2short(long_manifest(), tmp_path, tmp_path / "out", ["distill"], long_model=tmp_path,
                   run_job=lambda m, a: 0, log=lambda line: None)


def test_bad_settings_name_their_option():
    with pytest.raises(SpecError, match="--merge-weight"):
        Settings(merge_weight=1.5)
    with pytest.raises(SpecError, match="--max-tokens-fraction"):
        Settings(max_tokens_fraction=0.0)


def test_points_table_has_one_row_per_policy():
    points = [Point("long-CoT", 0.9, 0.95, 40.0, 38.0, 0, 0.0, ""), Point("rl", 0.85, 0.9, 20.0, 19.0, 10, 60.0, "")]
    lines = table(points).splitlines()
    assert len(lines) == 3 and lines[2].split()[:4] == ["rl", "0.850", "0.900", "20.0"]


def test_seeds_table_gives_each_policy_its_mean_and_range(tmp_path):
    runs = [[Point("long-CoT", 0.8, 0.9, 40.0, 38.0, 0, 0.0, ""), Point("rl", 0.7, 0.8, 20.0, 19.0, 10, 60.0, "")],
            [Point("long-CoT", 0.6, 0.9, 50.0, 38.0, 0, 0.0, ""), Point("rl", 0.5, 0.8, 40.0, 19.0, 10, 60.0, "")]]
    rows = {line.split()[0]: line.split() for line in seeds_table(runs).splitlines()[1:]}
    assert rows["long-CoT"][1:6] == ["2", "0.700", "(0.600-0.800)", "45.0", "(40.0-50.0)"]
    assert rows["rl"][-1] == "0.65x"  # each run's ratio to its own long policy (0.5 and 0.8), averaged
    for i, run in enumerate(runs):
        write_report(run, tmp_path / str(i), "t")
    assert [read_points(tmp_path / str(i) / "long2short.json") for i in range(2)] == runs
