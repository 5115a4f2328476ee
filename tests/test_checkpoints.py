"""Checkpoint checksums: recorded after a save, verified before a load; damage is named."""

import os
import subprocess
from types import SimpleNamespace

import pytest
import torch
import torch.distributed.checkpoint as dcp

from prefix_titan.runs.checkpoints import (
    ChecksumRecorder,
    DamagedCheckpoint,
    UnverifiedCheckpoint,
    check_step,
    recorded_sums,
    seal_step,
    sealed,
    verify_step,
)
from prefix_titan.titan.checks import check_checkpoint_to_load


def save_step(folder, step, seed=0):
    g = torch.Generator().manual_seed(seed + step)
    state = {"w": torch.randn(37, 11, generator=g), "b": torch.randn(5, generator=g)}
    dcp.save(state, checkpoint_id=str(folder / f"step-{step}"), no_dist=True)
    return folder / f"step-{step}"


def flip_byte(path, at=-7):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def recorded(tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    recorder = ChecksumRecorder(str(folder), rank=0)
    for step in (2, 4):
        save_step(folder, step)
    assert [os.path.basename(d) for d in recorder.record_pending()] == ["step-2", "step-4"]
    assert recorder.record_pending() == []  # each save once
    return folder


def test_recorded_sums_are_sha256sum_files_of_every_file(recorded):
    step = recorded / "step-4"
    assert sorted(recorded_sums(str(step))) == [".metadata", "__0_0.distcp"]
    check = subprocess.run(
        "cat sha256sums-*.txt | sha256sum -c", shell=True, cwd=step, capture_output=True, text=True
    )
    assert check.returncode == 0 and check.stdout.count(": OK") == 2
    assert check_step(str(step)) == ([], [])


def test_a_flipped_byte_of_the_same_size_is_named_with_the_intact_earlier_step(recorded):
    flip_byte(recorded / "step-4" / "__0_0.distcp")
    with pytest.raises(DamagedCheckpoint) as e:
        verify_step(str(recorded / "step-4"))
    message = str(e.value)
    assert "__0_0.distcp differs from the checksum recorded when it was saved" in message
    assert f"newest intact earlier step is {recorded / 'step-2'}" in message
    assert "--checkpoint.load_step 2" in message


def test_the_ranks_share_the_hashing_and_together_find_the_damage(recorded):
    flip_byte(recorded / "step-4" / "__0_0.distcp")
    found = [bool(check_step(str(recorded / "step-4"), rank, 2)[0]) for rank in (0, 1)]
    assert sorted(found) == [False, True]  # exactly one rank hashes that file


def test_a_truncated_file_is_named_even_without_recorded_checksums(tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    save_step(folder, 1)
    step = save_step(folder, 3)
    data = step / "__0_0.distcp"
    data.write_bytes(data.read_bytes()[:100])
    problems, unverified = check_step(str(step))
    assert problems and "__0_0.distcp is 100 bytes" in problems[0] and "truncated" in problems[0]
    assert unverified == [".metadata", "__0_0.distcp"]
    with pytest.raises(DamagedCheckpoint, match="newest intact earlier step is .*step-1"):
        verify_step(str(step))
    (step / ".metadata").write_bytes(b"\x80\x04")  # a truncated pickle
    assert ".metadata does not read" in check_step(str(step))[0][0]


def test_no_intact_step_says_to_start_again(recorded):
    for step in (2, 4):
        flip_byte(recorded / f"step-{step}" / ".metadata", at=-1)
    with pytest.raises(DamagedCheckpoint, match="No earlier step under it is intact"):
        verify_step(str(recorded / "step-4"))


def test_a_damaged_older_step_names_the_intact_later_one(recorded):
    """Checked (or resumed with --checkpoint.load_step) below an intact newer step, a damaged
    step does not say to start again: it names the later step."""
    flip_byte(recorded / "step-2" / "__0_0.distcp")
    with pytest.raises(DamagedCheckpoint) as e:
        verify_step(str(recorded / "step-2"))
    assert f"No earlier step under it is intact, but a later one is: {recorded / 'step-4'}" in (
        str(e.value)
    )
    assert "start the run again" not in str(e.value)


def test_steps_found_at_start_are_not_blessed_unless_saved_again(recorded):
    step = recorded / "step-4"
    for f in step.glob("sha256sums-*"):
        f.unlink()
    recorder = ChecksumRecorder(str(recorded), rank=0)
    assert recorder.record_pending() == []  # found complete at start: not this run's save
    save_step(recorded, 4, seed=99)  # a resumed run saves step 4 again: new content
    os.utime(step / ".metadata", ns=(1, 1))  # a distinct stamp whatever the clock resolution
    assert recorder.record_pending() == [str(step)]
    assert check_step(str(step)) == ([], [])


def job(tmp_path, load_step=-1, enable=True):
    return SimpleNamespace(
        job=SimpleNamespace(dump_folder=str(tmp_path)),
        checkpoint=SimpleNamespace(enable=enable, folder="checkpoint", load_step=load_step),
    )


def test_resume_verifies_the_step_torchtitan_would_load(recorded):
    run = recorded.parent
    check_checkpoint_to_load(job(run))  # intact
    flip_byte(recorded / "step-4" / "__0_0.distcp")
    with pytest.raises(DamagedCheckpoint, match="step-4 is damaged and will not be loaded"):
        check_checkpoint_to_load(job(run))
    check_checkpoint_to_load(job(run, load_step=2))  # the advice works
    check_checkpoint_to_load(job(run, enable=False))  # nothing is loaded
    with pytest.raises(
        ValueError,
        match=r"load_step = 3, but .*step-3 does not exist \(steps in .*: step-2, step-4\)",
    ):
        check_checkpoint_to_load(job(run, load_step=3))


def test_an_unfinished_newest_step_is_not_the_one_verified(recorded, caplog):
    unfinished = recorded / "step-6"
    unfinished.mkdir()
    (unfinished / "__0_0.distcp").write_bytes(b"partial")
    with caplog.at_level("WARNING"):
        check_checkpoint_to_load(job(recorded.parent))  # torchtitan loads step-4, which is intact
    # (torchtitan passes over a save cut short in silence: the run says so)
    assert f"{unfinished}: unfinished (no .metadata: a save cut short), not loaded; the run " in (
        caplog.text
    )
    assert f"resumes from {recorded / 'step-4'}" in caplog.text


def test_export_notes_an_unfinished_newest_step_it_passes_over(recorded, capsys):
    """A run killed while saving leaves a step without .metadata after its newest finished one:
    export and eval --all-checkpoints read the finished steps and say which they passed over
    (they exported step-4 in silence)."""
    from prefix_titan.evaluation.export import latest_step
    from prefix_titan.runs.checkpoints import passed_over

    assert passed_over(str(recorded)) is None and latest_step(str(recorded)).endswith("step-4")
    assert capsys.readouterr().err == ""
    unfinished = recorded / "step-6"
    unfinished.mkdir()
    (unfinished / "__0_0.distcp").write_bytes(b"")
    assert latest_step(str(recorded)) == str(recorded / "step-4")
    assert capsys.readouterr().err == (
        f"note: {unfinished} unfinished (no .metadata: a save cut short, or one under way), not "
        f"read; the newest finished step is {recorded / 'step-4'}\n"
    )


def test_a_finished_step_that_lost_its_metadata_is_damaged_not_unfinished(recorded):
    """Without .metadata torchtitan passes over a step; where its checksums name that file the
    save finished, so the step is refused as damaged (naming the intact earlier step), not
    passed over in favour of an older one, or a fresh start."""
    (recorded / "step-4" / ".metadata").unlink()
    with pytest.raises(DamagedCheckpoint) as e:
        check_checkpoint_to_load(job(recorded.parent))
    message = str(e.value)
    assert f"checkpoint {recorded / 'step-4'} is damaged and will not be loaded" in message
    assert ".metadata is missing, though its checksum was recorded" in message
    assert f"newest intact earlier step is {recorded / 'step-2'}" in message
    check_checkpoint_to_load(job(recorded.parent, load_step=2))  # the advice works


def test_another_ranks_checksum_file_being_written_is_no_file_of_the_step(recorded):
    """Rank 0 records every file of a step but the other ranks' own: a checksum file another
    rank is writing at that moment (`.sha256sums-rank1.txt.XXXX.tmp`) is none of them."""
    from prefix_titan.runs.checkpoints import files_of_rank

    step = recorded / "step-4"
    (step / ".sha256sums-rank1.txt.ab12cd.tmp").write_text("# half written")
    assert files_of_rank(str(step), 0) == [".metadata", "__0_0.distcp"]
    seal_step(str(step))
    assert sealed(str(step)) and check_step(str(step)) == ([], [])


def test_a_step_saved_just_before_a_kill_is_refused_until_sealed(recorded):
    # killed after torchtitan's save and before the checksums were recorded
    for f in (recorded / "step-4").glob("sha256sums-*"):
        f.unlink()
    with pytest.raises(UnverifiedCheckpoint) as e:
        check_checkpoint_to_load(job(recorded.parent))
    message = str(e.value)
    assert "step-4 is unverified and will not be loaded" in message
    assert ".metadata, __0_0.distcp have no recorded checksum" in message
    assert f"python -m prefix_titan.runs.checkpoints seal {recorded / 'step-4'}" in message
    assert f"Or leave it: the newest verified earlier step is {recorded / 'step-2'} (resume " in (
        message
    )
    # said before any run starts (a sweep's dry run planned it, and its launch then failed it):
    # a launch's checks read the step's checksum files, hashing nothing
    from prefix_titan.titan.checks import unverified_resume

    assert unverified_resume(job(recorded.parent)) == message
    assert unverified_resume(job(recorded.parent, load_step=2)) is None
    assert seal_step(str(recorded / "step-4")) == [".metadata", "__0_0.distcp"]
    assert unverified_resume(job(recorded.parent)) is None
    check_checkpoint_to_load(job(recorded.parent))  # accepted: resumes
    assert check_step(str(recorded / "step-4")) == ([], [])


def test_a_step_is_sealed_once_every_file_has_its_checksum(recorded, tmp_path):
    """What the launcher requires of a final step (with its validation row): complete, and each
    file's checksum recorded (read, not hashed)."""
    assert sealed(str(recorded / "step-4"))
    unsealed = save_step(tmp_path, 6)
    assert not sealed(str(unsealed))  # saved, its checksums not yet recorded (a stop between)
    seal_step(str(unsealed))
    assert sealed(str(unsealed))
    (unsealed / "extra.bin").write_bytes(b"x")  # a file added later
    assert not sealed(str(unsealed))
    (recorded / "step-2" / "sha256sums-rank0.txt").write_text("not a checksum file\n")
    assert not sealed(str(recorded / "step-2")) and not sealed(str(tmp_path / "step-9"))


def test_purge_older_steps_keeps_the_newest(tmp_path):
    from prefix_titan.runs.checkpoints import purge_older_steps

    for n in (2, 10, 4, 6):  # numeric order, not the names' order
        (tmp_path / f"step-{n}").mkdir()
        (tmp_path / f"step-{n}" / ".metadata").write_text("x")
    (tmp_path / "other").mkdir()
    deleted = purge_older_steps(str(tmp_path), 2)
    assert [os.path.basename(d) for d in deleted] == ["step-2", "step-4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "step-10", "step-6"]
    assert purge_older_steps(str(tmp_path), 2) == []
    with pytest.raises(ValueError, match="keep must be >= 1; got 0"):
        purge_older_steps(str(tmp_path), 0)


def test_a_purge_killed_midway_is_finished_by_the_next(tmp_path):
    """A step left aside by a killed purge (.purged-step-N) is deleted by the next purge, which
    can then set aside a step-N saved again under that name; a copy named step-4-backup is no
    step and is left alone."""
    from prefix_titan.runs.checkpoints import purge_older_steps
    from prefix_titan.runs.folder import checkpoint_steps

    (tmp_path / ".purged-step-2").mkdir()
    (tmp_path / ".purged-step-2" / "half").write_text("x")
    for n in (2, 4, 6):
        (tmp_path / f"step-{n}").mkdir()
    (tmp_path / "step-4-backup").mkdir()
    assert [os.path.basename(d) for d in checkpoint_steps(str(tmp_path))] == [
        "step-2",
        "step-4",
        "step-6",
    ]
    assert [os.path.basename(d) for d in purge_older_steps(str(tmp_path), 1)] == [
        "step-2",
        "step-4",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-4-backup", "step-6"]
