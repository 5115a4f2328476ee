"""Nothing lost when runs collide or files are damaged: the run folder's file helpers, checksums
bound to their step, sealing an unverified step, and an export that never touches what it reads."""

import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch
import torch.distributed.checkpoint as dcp

from prefix_titan.runs.checkpoints import (
    SUMS,
    ChecksumRecorder,
    DamagedCheckpoint,
    UnverifiedCheckpoint,
    check_step,
    seal_step,
    verify_step,
)
from prefix_titan.runs.folder import (
    EXPORT_RECORD,
    append_line,
    drop_torn_line,
    read_json,
    read_log,
    read_toml,
    write_json,
)

# -- run folder files --------------------------------------------------------------------------


def test_write_json_refuses_a_symlinked_target(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "run_config.json").symlink_to(victim)
    with pytest.raises(ValueError, match=r"run_config.json is a symbolic link"):
        write_json(str(tmp_path / "run_config.json"), {"a": 1})
    assert victim.read_text() == "keep"


def test_write_json_does_not_write_through_a_planted_temporary_file(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "out.json.tmp").symlink_to(victim)  # the old fixed temporary name
    write_json(str(tmp_path / "out.json"), {"a": 1})
    assert victim.read_text() == "keep"
    assert read_json(str(tmp_path / "out.json")) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["out.json", "out.json.tmp", "victim.txt"]


def test_write_json_gives_the_modes_of_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(str(tmp_path / "a.json"), [])
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


def test_append_line_and_drop_torn_line_do_not_follow_links(tmp_path):
    log = tmp_path / "prefix_metrics.jsonl"
    append_line(str(log), json.dumps({"step": 1}))
    append_line(str(log), json.dumps({"step": 2}) + "\n")
    assert [r["step"] for r in read_log(str(log))] == [1, 2]
    victim = tmp_path / "victim.txt"
    victim.write_text("no newline at the end")
    link = tmp_path / "linked.jsonl"
    link.symlink_to(victim)
    with pytest.raises(ValueError, match=r"linked.jsonl is a symbolic link"):
        append_line(str(link), "{}")
    with pytest.raises(ValueError, match=r"linked.jsonl is a symbolic link"):
        drop_torn_line(str(link))
    assert victim.read_text() == "no newline at the end"
    drop_torn_line(str(tmp_path / "absent.jsonl"))  # nothing to cut


def test_read_json_names_the_file_of_a_wrong_type_or_unreadable(tmp_path):
    path = tmp_path / "run_config.json"
    path.write_text("[1, 2]")
    with pytest.raises(
        ValueError, match=r"run_config.json holds a JSON list, not the object .*the run record"
    ):
        read_json(str(path), "the run record", expect=dict)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ValueError, match=r"dir.json cannot be read"):
        read_json(str(tmp_path / "dir.json"))
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match=r"binary.json"):
        read_json(str(tmp_path / "binary.json"))
    with pytest.raises(FileNotFoundError):
        read_json(str(tmp_path / "absent.json"))


def test_read_toml_names_the_file(tmp_path):
    (tmp_path / "ok.toml").write_text("[a]\nb = 1\n")
    assert read_toml(str(tmp_path / "ok.toml")) == {"a": {"b": 1}}
    (tmp_path / "bad.toml").write_text("[a\nb = ")
    with pytest.raises(ValueError, match=r"bad.toml is not valid TOML .*the plan"):
        read_toml(str(tmp_path / "bad.toml"), "the plan")


def test_read_log_names_a_torn_line_in_the_middle(tmp_path):
    log = tmp_path / "prefix_metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n{"step": 4, "l')
    with pytest.raises(ValueError, match=r"prefix_metrics.jsonl line 2 is not valid JSON"):
        read_log(str(log))
    log.write_text('{"step": 1}\n{"step": 3}\n{"step": 4, "l')  # a torn last line is no row
    assert [r["step"] for r in read_log(str(log))] == [1, 3]


# -- checkpoint checksums ----------------------------------------------------------------------


def save_step(folder, step, seed=0):
    g = torch.Generator().manual_seed(seed + step)
    state = {"w": torch.randn(37, 11, generator=g), "b": torch.randn(5, generator=g)}
    dcp.save(state, checkpoint_id=str(folder / f"step-{step}"), no_dist=True)
    return folder / f"step-{step}"


@pytest.fixture
def recorded(tmp_path):
    folder = tmp_path / "run" / "checkpoint"
    folder.mkdir(parents=True)
    recorder = ChecksumRecorder(str(folder), rank=0)
    for step in (2, 4):
        save_step(folder, step)
    recorder.record_pending()
    return folder


def test_the_sums_file_records_its_step(recorded):
    text = (recorded / "step-4" / SUMS.format(rank=0)).read_text()
    assert text.splitlines()[0] == "# prefix_titan checkpoint step 4 rank 0 files 2"
    check = subprocess.run(
        "sha256sum --strict -c sha256sums-rank0.txt",
        shell=True,
        cwd=recorded / "step-4",
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def test_a_step_folder_holding_another_steps_files_fails(recorded):
    shutil.rmtree(recorded / "step-4")
    shutil.copytree(recorded / "step-2", recorded / "step-4")  # files and sums of step 2
    with pytest.raises(DamagedCheckpoint) as e:
        verify_step(str(recorded / "step-4"))
    assert "records the checksums of step 2, but the folder is step-4" in str(e.value)
    assert "another step's files" in str(e.value)


def test_a_sums_file_that_does_not_parse_is_damage_not_absence(recorded):
    sums = recorded / "step-4" / SUMS.format(rank=0)
    sums.write_text(sums.read_text().replace("  __0_0.distcp", " __0_0.distcp") + "garbage\n")
    problems, _ = check_step(str(recorded / "step-4"))
    assert any("sha256sums-rank0.txt line 3 is not `<sha256>  <file>`" in p for p in problems)
    assert any("line 4" in p and "garbage" in p for p in problems)
    sums.write_text("garbage only\n")  # no header either
    with pytest.raises(DamagedCheckpoint, match="does not start with its `# prefix_titan"):
        verify_step(str(recorded / "step-4"))


def test_a_sums_file_cut_at_a_line_end_is_damage_not_unrecorded_files(recorded):
    sums = recorded / "step-4" / SUMS.format(rank=0)
    whole = sums.read_text()
    sums.write_text("".join(whole.splitlines(keepends=True)[:2]))  # header and one sum of two
    with pytest.raises(DamagedCheckpoint, match="holds 1 checksums, but was written with 2: it"):
        verify_step(str(recorded / "step-4"))
    # a file written before the header counted its sums: its length is not checked
    header, *rest = whole.splitlines(keepends=True)
    sums.write_text(header.replace(" files 2", "") + rest[0])
    assert check_step(str(recorded / "step-4")) == ([], [rest[1].split()[1]])
    sums.write_text(header.replace(" files 2", "") + "".join(rest))
    assert check_step(str(recorded / "step-4")) == ([], [])


class _Planted:
    def __reduce__(self):
        return (open, (os.environ["PLANTED_MARKER"], "w"))


def test_metadata_is_checked_before_it_is_unpickled(recorded, tmp_path, monkeypatch):
    marker = tmp_path / "unpickled"
    monkeypatch.setenv("PLANTED_MARKER", str(marker))
    (recorded / "step-4" / ".metadata").write_bytes(pickle.dumps(_Planted()))
    problems, _ = check_step(str(recorded / "step-4"))
    assert problems == [".metadata differs from the checksum recorded when it was saved"]
    assert not marker.exists()
    (recorded / "step-2" / ".metadata").write_bytes(b"")
    assert check_step(str(recorded / "step-2"))[0][0].startswith(".metadata differs")


@pytest.mark.slow
def test_an_unverified_step_says_how_to_accept_it_and_seal_accepts_it(recorded):
    step = recorded / "step-4"
    (step / SUMS.format(rank=0)).unlink()
    with pytest.raises(UnverifiedCheckpoint) as e:
        verify_step(str(step), what="export")
    message = str(e.value)
    assert "is unverified and will not be exported" in message
    assert f"python -m prefix_titan.runs.checkpoints seal {step}" in message
    assert "--accept-unverified" in message
    assert verify_step(str(step), accept_unverified=True) == [".metadata", "__0_0.distcp"]
    done = subprocess.run(
        [sys.executable, "-m", "prefix_titan.runs.checkpoints", "seal", str(step)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "sealed .metadata, __0_0.distcp" in done.stdout, done.stderr
    assert verify_step(str(step)) == []


def test_check_and_seal_name_the_step_folders_of_a_run_given_in_their_place(recorded, capsys):
    """`check RUN` (a run's folder, or any folder that is no step) used to say the folder was
    unverified and to suggest a seal, which then refused it: now it is no step, and where the
    steps are."""
    from prefix_titan.runs.checkpoints import main

    run = recorded.parent  # the run folder: recorded is its checkpoint folder
    for command in ("check", "seal"):
        with pytest.raises(SystemExit) as e:
            main([command, str(run)])
        assert e.value.code == 1
        err = capsys.readouterr().err
        assert f"{run} is not a finished checkpoint step (it holds no .metadata" in err
        assert f"finished here: {recorded / 'step-2'}, {recorded / 'step-4'}" in err
    assert not list(run.glob("sha256sums*"))
    # a step whose .metadata was lost after its save (its checksum names it) is damage, not a
    # save cut short (as a resume says); a path that is not there does not exist
    import shutil

    lost = recorded / "step-6"
    shutil.copytree(recorded / "step-4", lost)
    (lost / ".metadata").unlink()
    with pytest.raises(SystemExit):
        main(["check", str(lost)])
    err = " ".join(capsys.readouterr().err.split())
    assert f"checkpoint {lost} is damaged" in err and "not a finished checkpoint step" not in err
    assert ".metadata is missing, though its checksum was recorded when the step was saved" in err
    with pytest.raises(SystemExit):
        main(["check", str(recorded / "step-9")])
    assert f"{recorded / 'step-9'} does not exist: give a step folder" in capsys.readouterr().err


def test_a_folder_that_is_no_finished_step_is_refused_as_such_before_its_checksums(recorded):
    """export, the embedding probe and a resume verify the step they load: a run folder or a
    save cut short (data, no .metadata) was called unverified, with a seal and an
    --accept-unverified that then both refused it; now it is no finished step, and the finished
    steps are named."""
    half = recorded / "step-6"
    half.mkdir()
    (half / "__0_0.distcp").write_bytes((recorded / "step-4" / "__0_0.distcp").read_bytes())
    steps = f"finished here: {recorded / 'step-2'}, {recorded / 'step-4'}"
    for folder in (recorded.parent, recorded, half):
        with pytest.raises(ValueError, match="is not a finished checkpoint step") as e:
            verify_step(str(folder), what="export", accept_unverified=True)
        assert not isinstance(e.value, UnverifiedCheckpoint) and steps in str(e.value)


def test_seal_refuses_a_damaged_step(recorded):
    step = recorded / "step-4"
    (step / SUMS.format(rank=0)).unlink()
    data = step / "__0_0.distcp"
    data.write_bytes(data.read_bytes()[:50])
    with pytest.raises(DamagedCheckpoint, match="will not be sealed"):
        seal_step(str(step))
    assert not (step / SUMS.format(rank=0)).exists()


# -- export ------------------------------------------------------------------------------------


def export_to(recorded, out, **kw):
    """An export refused before it reads the tokenizer (whose file is only a placeholder)."""
    from prefix_titan.evaluation.export import export_run

    unread = recorded.parent.parent / "unread-tokenizer"  # outside the run folder
    unread.mkdir(exist_ok=True)
    (unread / "tokenizer.json").write_text("{}")
    return export_run(
        "tiny",
        str(unread),
        64,
        str(recorded),
        str(out),
        run_dir=str(recorded.parent),
        **kw,
    )


@pytest.mark.parametrize(
    "where, relation",
    [
        ("run", r"is the run folder"),
        ("parent", r"holds the run folder"),
        ("checkpoint", r"is the checkpoint folder"),
        ("checkpoint/exported", r"lies inside the checkpoint folder"),
        ("checkpoint/step-4", r"lies inside the checkpoint folder"),
    ],
)
def test_export_never_replaces_or_writes_into_what_it_reads(recorded, where, relation):
    run = recorded.parent
    out = {"run": run, "parent": run.parent}.get(where, run / where)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=rf"--out {out} {relation} .*export reads from"):
            export_to(recorded, out, overwrite=overwrite)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert check_step(str(recorded / "step-4")) == ([], [])


def test_overwrite_replaces_only_an_earlier_export(recorded, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=rf"--out {out} exists and is not an earlier export"):
        export_to(recorded, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    (out / EXPORT_RECORD).write_text("{}")
    with pytest.raises(ValueError, match="not written by model.flavor"):  # past the refusal
        export_to(recorded, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"  # a failed export leaves it as it was


def test_export_refuses_another_steps_files_and_an_unverified_step(recorded, tmp_path):
    shutil.rmtree(recorded / "step-4")
    shutil.copytree(recorded / "step-2", recorded / "step-4")
    with pytest.raises(DamagedCheckpoint, match="records the checksums of step 2"):
        export_to(recorded, tmp_path / "hf")
    for f in (recorded / "step-4").glob("sha256sums-*"):
        f.unlink()
    with pytest.raises(UnverifiedCheckpoint, match="--accept-unverified"):
        export_to(recorded, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_a_resume_whose_metrics_log_is_gone_says_so(tmp_path):
    """A run folder with a complete checkpoint and no metrics log (removed since): the run that
    resumes it says that the earlier steps' metrics are gone (it resumed without a word); a
    fresh folder, a log that is there, or checkpoints off say nothing."""
    from types import SimpleNamespace

    from prefix_titan.runs.checkpoints import DCP_METADATA, record_step
    from prefix_titan.runs.folder import METRICS_LOG
    from prefix_titan.titan.metrics import lost_log, saved_steps

    def lost(checkpoint):
        return lost_log(str(tmp_path), saved_steps(str(tmp_path), checkpoint))

    checkpoint = SimpleNamespace(enable=True, folder="checkpoint")
    assert lost(checkpoint) is None  # a fresh run
    for n in (0, 8):  # a seed checkpoint (step 0, nothing trained), then a step trained
        step = tmp_path / "checkpoint" / f"step-{n}"
        step.mkdir(parents=True)
        (step / DCP_METADATA).write_bytes(b"")
        record_step(str(step), 0)
        if n == 0:
            assert lost(checkpoint) is None
    said = lost(checkpoint)
    assert said.startswith(f"{tmp_path / METRICS_LOG} is not there, but checkpoints are (step-8")
    assert lost(SimpleNamespace(enable=False, folder="checkpoint")) is None
    (tmp_path / METRICS_LOG).write_text('{"step": 8}\n')
    assert lost(checkpoint) is None
    # a log cut short (rows of steps 5 to 8 gone), or cut inside its first row: said
    (tmp_path / METRICS_LOG).write_text("".join(f'{{"step": {s}}}\n' for s in range(1, 5)))
    said = lost(checkpoint)
    assert said.startswith(f"{tmp_path / METRICS_LOG} ends at step 4, but checkpoints go to step-8")
    assert (
        "whose row (step 8) every run logs before saving it: the rows after that are gone" in said
    )
    (tmp_path / METRICS_LOG).write_text('{"step": 1, "lo')
    assert " holds no row, but checkpoints go to step-8" in lost(checkpoint)
    # logged every 5th step (and step 1): step 5 was the last row due before step 8's save
    log_5 = lost_log(str(tmp_path), saved_steps(str(tmp_path), checkpoint), log_freq=5)
    assert "whose row (step 5)" in log_5
    (tmp_path / METRICS_LOG).write_text('{"step": 1}\n{"step": 5}\n')
    assert lost_log(str(tmp_path), saved_steps(str(tmp_path), checkpoint), log_freq=5) is None
    # a resume may log more often than the steps before it were: the record's frequency counts
    from prefix_titan.titan.metrics import _recorded_log_freq

    assert _recorded_log_freq(str(tmp_path)) == 1  # (no record)
    (tmp_path / "run_config.json").write_text('{"metrics": {"log_freq": 5}}')
    assert _recorded_log_freq(str(tmp_path)) == 5
