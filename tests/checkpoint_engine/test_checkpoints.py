"""The checkpoint directory: atomic commits, pruning, and finding the latest complete one."""
import pytest

from seesaw.checkpoint_engine import checkpoints as ck


def write(root, iteration):
    staging = ck.staging_dir(root, iteration)
    (staging / ck.TRAINER_DIR).mkdir()
    (staging / ck.TRAINER_DIR / "state.pt").write_bytes(b"x" * iteration)
    ck.write_state(staging, {"iteration": iteration})
    return ck.commit(staging)


def test_commit_keeps_the_last_two_and_points_latest_at_the_newest(tmp_path):
    for iteration in (1, 2, 3):
        final = write(tmp_path, iteration)
    assert final == tmp_path / "iteration-000003"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iteration-000002", "iteration-000003", "latest"]
    assert ck.latest(tmp_path) == final and ck.resolve(tmp_path) == final
    assert ck.read_state(final) == {"iteration": 3}


def test_a_newer_checkpoint_left_by_an_earlier_job_does_not_prune_the_new_one(tmp_path):
    write(tmp_path, 99)
    write(tmp_path, 100)
    final = write(tmp_path, 4)  # a re-created job on the same volume
    assert final.is_dir() and ck.latest(tmp_path) == final
    assert (tmp_path / "iteration-000100").is_dir()


def test_a_crash_before_the_commit_leaves_the_previous_checkpoint_latest(tmp_path):
    write(tmp_path, 1)
    staging = ck.staging_dir(tmp_path, 2)
    (staging / ck.TRAINER_DIR).mkdir()  # the trainer wrote its part, then the pod died
    assert ck.latest(tmp_path) == tmp_path / "iteration-000001"
    with pytest.raises(ck.CheckpointError, match="not a complete checkpoint"):
        ck.commit(staging)
    assert ck.staging_dir(tmp_path, 2) == staging and not any(staging.iterdir()), "a leftover staging dir starts empty"


def test_latest_falls_back_to_the_newest_complete_checkpoint_when_its_target_is_gone(tmp_path):
    write(tmp_path, 1)
    write(tmp_path, 2)
    (tmp_path / "latest").write_text("iteration-000003\n")  # a crash while iteration 3 was re-committed
    assert ck.latest(tmp_path) == tmp_path / "iteration-000002"


def test_resolve_names_what_it_expected(tmp_path):
    with pytest.raises(ck.CheckpointError, match="neither a checkpoint directory .* nor a checkpoints directory"):
        ck.resolve(tmp_path)
