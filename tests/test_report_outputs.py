"""What a consumer of a report folder reads: report.md written last (no earlier report's
report.md or report.json beside new figures, whatever the point a report stops at), and
report.json's layout: every key described in docs/evaluation.md, each metric's unit and which way
it is better, the warnings shown under the answer."""

import json
import re

import pytest
from helpers import ROOT, make_run

from prefix_titan.sweep import report as report_module

DOC = ROOT / "docs" / "evaluation.md"


def simulated(root, seeds=(1, 2, 3)):
    """A small simulated sweep (ce, label_smoothing, prefix_tau0.5; evaluated at three steps)."""
    from prefix_titan.evaluation.harness import DEFAULT_TASKS
    from prefix_titan.evaluation.probes import BLANK_TASKS, PROBE_TASKS
    from prefix_titan.sweep import simulate as sim
    from prefix_titan.sweep.configs import arm_specs

    arms = tuple(
        s for s in arm_specs() if s.arm_name() in ("ce", "label_smoothing", "prefix_tau0.5")
    )
    tasks = (*DEFAULT_TASKS, *PROBE_TASKS, *BLANK_TASKS)
    runs = sim.simulate(sim.Sweep(arms=arms, items=20, seeds=seeds, tasks=tasks), seed=0)
    sim.write(runs, str(root))
    return root


@pytest.fixture(scope="module")
def sweep_json(tmp_path_factory):
    """(the simulated sweep, its report.json, its report.md) of a report without figures."""
    root = simulated(tmp_path_factory.mktemp("outputs") / "sweep")
    text = report_module.report(str(root), figures=False)
    return root, json.loads((root / "report" / "report.json").read_text()), text


@pytest.mark.slow
def test_an_interrupted_report_leaves_no_finished_report_beside_its_new_figures(
    tmp_path, monkeypatch
):
    """A report killed after a figure changed left the new figure beside the earlier report's
    report.md, which links it, and report.json: both go before any figure is written, report.json
    is written after the figures, report.md last."""
    root = simulated(tmp_path / "sweep")
    out = root / "report"
    report_module.report(str(root))
    finished = {"report.md", "report.json", "differences_vs_tau.png", "validation_ce.png"}
    assert finished <= {p.name for p in out.iterdir()}
    earlier = (out / "validation_ce.png").read_bytes()

    saved = []
    real_save = report_module._save

    def stopped_after_one_figure(fig, folder, name):
        real_save(fig, folder, name)
        saved.append(name)
        raise KeyboardInterrupt("stopped after a figure")

    monkeypatch.setattr(report_module, "_save", stopped_after_one_figure)
    with pytest.raises(KeyboardInterrupt):
        report_module.report(str(root))
    assert saved == ["differences_vs_tau.png"]
    left = {p.name for p in out.iterdir()}
    assert "report.md" not in left and "report.json" not in left, left
    assert (out / "validation_ce.png").read_bytes() == earlier  # (not yet redrawn: an old figure)
    monkeypatch.undo()

    def refused(path, data, **options):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_module, "write_json", refused)
    with pytest.raises(OSError, match="No space left"):
        report_module.report(str(root))
    left = {p.name for p in out.iterdir()}
    assert "report.md" not in left and "report.json" not in left, left
    assert {"differences_vs_tau.png", "validation_ce.png"} <= left  # this report's figures
    monkeypatch.undo()

    text = report_module.report(str(root))
    assert finished <= {p.name for p in out.iterdir()}
    for linked in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert (out / linked).is_file(), linked
    assert json.loads((out / "report.json").read_text())["answer"] in text
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_report_without_figures_removes_the_earlier_report_first(tmp_path, monkeypatch):
    """--no-figures removes an earlier report's figures (they would show other numbers): the
    earlier report.md and report.json go before them, and report.md is written last."""
    root = simulated(tmp_path / "sweep", seeds=(1, 2))
    out = root / "report"
    report_module.report(str(root), figures=False)
    (out / "validation_ce.png").write_bytes(b"an earlier report's figure")
    order = []
    real_write = report_module.write_atomically

    def recorded(path, text):
        order.append(path.rsplit("/", 1)[-1])
        return real_write(path, text)

    real_remove = report_module._remove_stale

    def removed(folder, name):
        left = {p.name for p in out.iterdir()}
        assert "report.md" not in left and "report.json" not in left, left
        order.append(f"-{name}")
        return real_remove(folder, name)

    monkeypatch.setattr(report_module, "write_atomically", recorded)
    monkeypatch.setattr(report_module, "_remove_stale", removed)
    monkeypatch.setattr(
        report_module, "write_json", lambda path, data: recorded(path, json.dumps(data))
    )
    report_module.report(str(root), figures=False)
    assert order == ["-validation_ce.png", "report.json", "report.md"]


def test_a_link_in_the_reports_place_is_refused_before_anything_is_removed(tmp_path):
    root = simulated(tmp_path / "sweep", seeds=(1, 2))
    out = root / "report"
    report_module.report(str(root), figures=False)
    (tmp_path / "elsewhere.md").write_text("kept")
    (out / "report.md").unlink()
    (out / "report.md").symlink_to(tmp_path / "elsewhere.md")
    with pytest.raises(ValueError, match=r"report\.md is a symbolic link .*remove the link"):
        report_module.report(str(root), figures=False)
    assert (out / "report.json").is_file() and (tmp_path / "elsewhere.md").read_text() == "kept"


def documented_keys() -> set[str]:
    """The top-level keys the "report.json" section of docs/evaluation.md lists: the names in
    backquotes that open its list items (`a`: ...; `a`, `b`: ...) and the sentences in them
    (`a`: ... . `b`: ...; `a`: ...; `b`: ...)."""
    text = DOC.read_text()
    section = text.split("\n## report.json\n", 1)[1].split("\n## ", 1)[0]
    items = re.split(r"\n- ", section)[1:]
    keys = set()
    for item in items:
        head = item.split(":", 1)[0]
        keys.update(re.findall(r"`([a-z_]+)`", head))
        keys.update(re.findall(r"[.;]\s+`([a-z_]+)`:", item))  # (a second key in one item)
    return keys


def test_every_key_of_report_json_is_described(sweep_json):
    _, data, _ = sweep_json
    documented = documented_keys()
    assert "runs_dir" in documented and "schema" in documented  # (the section is read)
    missing = sorted(set(data) - documented)
    assert not missing, f"report.json keys not described in docs/evaluation.md: {missing}"
    stale = sorted(documented - set(data))
    assert not stale, f"described but not in report.json: {stale}"
    assert data["schema"] == report_module.SCHEMA == 1


def test_the_fields_of_a_comparison_and_an_interval_are_described(sweep_json):
    _, data, _ = sweep_json
    section = DOC.read_text().split("\n## report.json\n", 1)[1]
    for field in [*data["comparisons"][0], "mean", "low", "high", "n"]:
        assert f"`{field}`" in section, field
    interval = next(iv for iv in data["per_arm"]["val CE"].values() if iv)
    assert set(interval) == {"mean", "low", "high", "n"}


def test_every_metric_of_the_report_has_its_unit_and_direction(sweep_json):
    """A comparison's direction is null unless claimed: `metrics` says which sign is a gain, in
    which unit; the metrics that describe the target are no outcome (neither way better)."""
    _, data, _ = sweep_json
    named = {c["metric"] for c in data["comparisons"]} | {c["metric"] for c in data["claims"]}
    named |= set(data["per_arm"]) | set(data["per_arm_final"]) | set(data["per_run"])
    named |= {t["metric"] for t in data["trends"]}
    assert "val CE" in named and "target gold mass" in named
    assert named <= set(data["metrics"]), sorted(named - set(data["metrics"]))
    m = data["metrics"]
    assert m["val CE"] == {
        "unit": "nats per token",
        "better": "lower",
        "kind": "outcome",
        "source": "validation",
        "description": "validation plain CE",
    }
    assert m["char composite"]["better"] == "higher" and m["char composite"]["source"] == "eval"
    assert m["downstream bits/byte"]["better"] == "lower"
    assert m["downstream bits/byte"]["unit"] == "bits per byte"
    for name in ("target gold mass", "implied CE"):
        assert m[name]["better"] is None and m[name]["kind"] == "descriptive", name
    assert report_module.better("val support mass") is None
    assert report_module.better("char acc, blank") is None
    assert report_module.metrics_json(["char acc, blank"])["char acc, blank"]["kind"] == "control"
    assert data["validation_steps"] == [3000, 3300, 3600]
    averaged = "validation rows, step 1's (after one update) left out: steps 3000, 3300, 3600."
    assert averaged in sweep_json[2]


def test_the_warnings_under_the_answer_are_in_report_json(tmp_path):
    """report.md's warnings under the answer (runs not matched, unfinished runs) are report.json's
    `warnings`, in that order; a report without any has []."""
    for seed in (1, 2, 3):
        for name, objective in (
            ("ce", {"name": "ce"}),
            ("label_smoothing", {"name": "label_smoothing"}),
        ):
            lr = 0.01 if (name, seed) == ("ce", 3) else None  # (a run not matched)
            make_run(tmp_path, name, objective, 0.0, seed=seed, lr=lr)
    text = report_module.report(str(tmp_path), figures=False)
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert len(data["warnings"]) == 2
    assert data["warnings"][0].startswith("**Warning.** The runs are not matched: 1 difference")
    assert data["warnings"][1].startswith("**Unfinished: 6 runs** below the configured")
    answer = text.index(f"**Answer.** {data['answer']}\n\n")
    under = text[answer:].split("\n\n")[1 : 1 + len(data["warnings"])]
    assert under == data["warnings"]


def test_a_sweep_without_warnings_has_none(sweep_json):
    _, data, text = sweep_json
    assert data["warnings"] == [] and "**Warning." not in text and "**Unfinished" not in text
