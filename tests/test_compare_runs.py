"""scripts/compare_runs.py: how closely runs follow one another, from their metrics logs."""

import json
import subprocess
import sys

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


def test_runs_are_compared_bit_for_bit_at_the_steps_both_logged(tmp_path):
    a = _run(
        tmp_path / "a",
        [
            {"step": 1, "loss": 9.0},
            {"step": 2, "loss": 8.5},
            {"step": 2, "validation_plain_ce": 8.9},  # a validation row: no training loss
            {"step": 3, "loss": 8.25},
        ],
    )
    # a resumed run that logged step 2 again: its later row counts
    b = _run(
        tmp_path / "b",
        [{"step": 1, "loss": 9.0}, {"step": 2, "loss": 8.0}, {"step": 2, "loss": 8.5}]
        + [{"step": 3, "loss": 8.25}],
    )
    c = _run(tmp_path / "c", [{"step": 2, "loss": 8.5}, {"step": 3, "loss": 8.25 + 2**-20}])
    d = _run(tmp_path / "d", [{"step": 1, "loss": 9.5}, {"step": 3, "loss": 8.0}])
    assert compare_runs.losses(a) == {1: 9.0, 2: 8.5, 3: 8.25}
    out = _cli(a, b, c, d)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"{b}: 3 steps in common (1-3); bit-for-bit equal at every one"
    assert lines[1] == (
        f"{c}: 2 steps in common (2-3); equal through step 2; first differs at step 3 by "
        f"{2**-20:.3g}; largest difference {2**-20:.3g} (step 3)"
    )
    assert lines[2] == (
        f"{d}: 2 steps in common (1-3); equal at no step; first differs at step 1 by 0.5; "
        "largest difference 0.5 (step 1)"
    )


def test_folders_that_cannot_be_compared_are_refused(tmp_path):
    a = _run(tmp_path / "a", [{"step": 1, "loss": 9.0}])
    later = _run(tmp_path / "later", [{"step": 5, "loss": 7.0}])
    only_validation = _run(tmp_path / "val", [{"step": 1, "validation_plain_ce": 9.0}])
    cases = {
        (a, str(tmp_path / "missing")): "missing holds no prefix_metrics.jsonl",
        (a, later): "later against " + a + ": no step logged by both runs",
        (a, only_validation): "holds no training loss",
        (a,): "the following arguments are required: run",
    }
    for args, said in cases.items():
        out = _cli(*args)
        assert out.returncode == 2 and said in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
