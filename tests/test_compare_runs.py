"""scripts/compare_runs.py: how closely runs follow one another, from their metrics logs."""

import json
import subprocess
import sys

import pytest
from helpers import ROOT, load_script

compare_runs = load_script("compare_runs")


def _run(folder, rows):
    folder.mkdir()
    (folder / "prefix_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(folder)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "scripts/compare_runs.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_runs_are_compared_bit_for_bit_at_the_steps_both_logged(tmp_path):
    nan = float("nan")
    a = _run(
        tmp_path / "a",
        [
            {"step": 1, "loss": 9.0},
            {"step": 2, "loss": 8.5},
            {"step": 2, "validation_plain_ce": 8.9},  # a validation row: no training loss
            {"step": 3, "loss": 8.25},
            {"step": 4, "loss": nan},
        ],
    )
    # a resumed run that logged step 2 again: its later row counts; NaN at the same step repeats
    b = _run(
        tmp_path / "b",
        [{"step": 1, "loss": 9.0}, {"step": 2, "loss": 8.0}, {"step": 2, "loss": 8.5}]
        + [{"step": 3, "loss": 8.25}, {"step": 4, "loss": nan}],
    )
    c = _run(
        tmp_path / "c",
        [{"step": s, "loss": v} for s, v in ((1, 9.0), (2, 8.5), (3, 8.25 + 2**-20), (4, 7.0))],
    )
    d = _run(tmp_path / "d", [{"step": 1, "loss": 9.5}, {"step": 3, "loss": 8.0}])
    assert compare_runs.losses(b)[2] == 8.5
    out = _cli(a, b, str(tmp_path / "missing"), c, d)
    lines = out.stdout.splitlines()
    assert lines[0] == f"{b}: 4 steps in common (1-4); bit-for-bit equal at every one"
    assert lines[1].startswith(f"{tmp_path / 'missing'}: not compared: ")
    assert lines[2] == (  # the NaN difference at step 4 is not a largest difference
        f"{c}: 4 steps in common (1-4); equal through step 2; first differs at step 3 "
        f"({8.25 + 2**-20!r} against 8.25); largest difference {2**-20:.3g} (step 3)"
    )
    # d stopped early: the steps it did not log are said, and make the exit status 1
    assert lines[3] == (
        f"{d}: 2 steps in common (1-3), the reference's steps 2, 4 not logged; equal at no "
        "step; first differs at step 1 (9.5 against 9.0); largest difference 0.5 (step 1)"
    )
    assert out.returncode == 1 and not out.stderr
    assert _cli(a, b).returncode == 0


def test_a_run_of_another_objective_is_compared_and_said_to_be(tmp_path, capsys):
    """The loss is the objective's: a run of another objective is compared all the same, and its
    line names both objectives; a run without a record, or of the same objective, says nothing."""
    rows = [{"step": 1, "loss": 9.0}, {"step": 2, "loss": 8.5}]
    ref, same, other, bare = (_run(tmp_path / n, rows) for n in ("ref", "same", "other", "bare"))
    for folder, record in ((ref, {"name": "ce"}), (same, {"name": "ce"})):
        (tmp_path / folder / "run_config.json").write_text(json.dumps({"objective": record}))
    (tmp_path / other / "run_config.json").write_text(
        json.dumps({"objective": {"name": "prefix", "tau": 0.5}})
    )
    assert compare_runs.main([ref, same, other, bare]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("bit-for-bit equal at every one") and lines[2] == lines[0].replace(
        same, bare
    )
    assert lines[1] == (
        f"{other}: 2 steps in common (1-2); bit-for-bit equal at every one (another objective: "
        "prefix_tau0.5 against the reference's ce; its loss is another quantity)"
    )


@pytest.mark.slow
def test_folders_that_cannot_be_compared_are_said(tmp_path):
    a = _run(tmp_path / "a", [{"step": 1, "loss": 9.0}])
    later = _run(tmp_path / "later", [{"step": 5, "loss": 7.0}])
    only_validation = _run(tmp_path / "val", [{"step": 1, "validation_plain_ce": 9.0}])
    no_step = _run(tmp_path / "no_step", [{"loss": 9.0}])
    text_loss = _run(tmp_path / "text", [{"step": 1, "loss": None}])
    said = {
        later: "no step logged by both runs",
        only_validation: "holds no training loss",
        no_step: "row 1: step None, loss 9.0: a training row needs a whole step number",
        text_loss: "row 1: step 1, loss None",
    }
    out = _cli(a, *said)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    for line, (folder, what) in zip(out.stdout.splitlines(), said.items(), strict=True):
        assert line.startswith(f"{folder}: not compared: ") and what in line, line
    for args, what in {
        (str(tmp_path / "missing"), a): "the reference: ",
        (a,): "the following arguments are required: run",
    }.items():
        out = _cli(*args)
        assert out.returncode == 2 and what in out.stderr and "Traceback" not in out.stderr
