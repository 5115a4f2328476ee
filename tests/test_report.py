"""The sweep report on small fake run folders: arms paired by seed, intervals, claims, the
compute-matched invariants. Its decision rule's error rates: test_verdict.py."""

import dataclasses
import json
import math
import os
import shutil
import zlib

import numpy as np
import pytest
from helpers import ROOT, make_run
from scipy.stats import t as student_t

from prefix_titan.runs.folder import METRICS_LOG
from prefix_titan.sweep import report as report_module
from prefix_titan.sweep.stats import t_interval


def report(*args, **kwargs):
    """The report without its figures unless a test asks for them (drawing them is most of a
    report's time; the tests of the figures draw them)."""
    return report_module.report(*args, **{"figures": False, **kwargs})


ARMS = {
    "ce": ({"name": "ce"}, 0.0),
    "label_smoothing": ({"name": "label_smoothing"}, 0.0),
    "prefix_tau0.5": ({"name": "prefix", "tau": 0.5}, 0.15),  # clearly better
    "prefix_norm_tau0.1": ({"name": "prefix", "tau": 0.1, "normalize": True}, 0.0),  # the same
}


@pytest.fixture
def sweep(tmp_path):
    for seed in (1, 2, 3):
        for name, (objective, score) in ARMS.items():
            make_run(tmp_path, name, objective, score, seed=seed)
    return tmp_path


def table(text, title):
    """The rows of the first markdown table after `title`: {arm: [cells]}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = {}
    for line in lines[start:]:
        if line.startswith("| ") and not line.startswith("| arm "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
        elif rows and not line.startswith("|"):
            break
    return rows


@pytest.mark.slow
def test_per_arm_means_and_t_intervals_over_seeds(sweep):
    text = report(str(sweep), figures=True)
    assert text.startswith("# Sweep report: 4 arms × 3 seeds (1, 2, 3)")
    assert text.splitlines()[2].startswith("**Answer.** ")
    rows = table(text, "## Per arm")
    assert list(rows) == ["ce", "label_smoothing", "prefix_tau0.5", "prefix_norm_tau0.1"]
    header = [
        c.strip()
        for c in text.split("## Per arm")[1].split("\n\n")[1].splitlines()[0].split("|")[2:-1]
    ]
    assert header[:3] == ["char composite", "downstream bits/byte", "val CE"]
    # val CE: the mean of each run's last 3 validation rows (it has two: 4.0 and 3.5 + noise)
    ce = [3.75 + np.random.default_rng([s, zlib.crc32(b"ce")]).normal(0, 0.01) for s in (1, 2, 3)]
    half = student_t.ppf(0.975, 2) * np.std(ce, ddof=1) / np.sqrt(3)
    mean = np.mean(ce)
    assert rows["ce"][2] == f"{mean:.4f} [{mean - half:.4f}, {mean + half:.4f}]"
    # what reading the word adds: the blank twins get no gain, so ce's is about 0, prefix's 0.15
    word = header.index("char acc - blank")
    assert header[word - 1] == "char acc"  # (no items with log-likelihoods here: not calibrated)
    assert "char acc, calibrated" not in header
    assert abs(float(rows["ce"][word].split()[0])) < 0.05
    assert 0.1 < float(rows["prefix_tau0.5"][word].split()[0]) < 0.2
    for png in ("differences_vs_tau.png", "validation_ce.png"):
        assert (sweep / "report" / png).stat().st_size > 5000
        assert f"![{png}]({png})" in text
    assert "Not plotted: the evaluation curves (no family's evaluated primary at two or " in text
    text = report(str(sweep))  # --no-figures: an earlier report's figures would mislead
    assert "No figures drawn (--no-figures)." in text and ".png" not in text
    assert not list((sweep / "report").glob("*.png"))


@pytest.mark.slow
def test_a_value_that_rounds_to_zero_is_shown_without_a_sign():
    """A flat trend's slope of -1e-9 read "-0.0000" in the answer's notes: a rounded zero has no
    sign there, nor among the report's unsigned values; other values keep theirs."""
    from prefix_titan.sweep.analysis import _fmt
    from prefix_titan.sweep.report import _num

    assert [_fmt(v) for v in (-1e-9, -0.0, 0.0, 4e-5)] == ["0.0000"] * 4
    assert [_fmt(v) for v in (-6e-5, 0.0123, -1.5)] == ["-0.0001", "+0.0123", "-1.5000"]
    assert _num(-1e-9) == "0.0000" and _num(-0.25) == "-0.2500" and _num(None, True) == "-"


def test_a_signed_difference_that_rounds_to_zero_keeps_its_sign():
    """An estimate beside its signed bounds read "0.0000 [-0.0100, +0.0100]": a table's signed
    value that rounds to zero is written with its sign, as its bounds are (a zero is +)."""
    from prefix_titan.sweep.report import _ci, _num

    shown = [_num(v, True) for v in (-1e-9, -0.0, 0.0, 4e-5, -6e-5, 0.0123, -1.5)]
    assert shown == ["-0.0000", "+0.0000", "+0.0000", "+0.0000", "-0.0001", "+0.0123", "-1.5000"]
    c = dataclasses.make_dataclass("C", ["estimate", "low", "high"])(-2e-5, -0.01, 0.01)
    assert _ci(c) == "-0.0000 [-0.0100, +0.0100]"


def test_the_step_1_validation_is_not_averaged_in(sweep):
    """torchtitan validates at step 1 too: that row (one update in, 8.8 here) is left out
    of the last validation rows a short run averages, and the report names the steps used."""
    before = table(report(str(sweep)), "## Per arm")
    for log in sweep.glob(f"*/seed*/{METRICS_LOG}"):
        first = json.dumps({"step": 1, "validation_plain_ce": 8.8}) + "\n"
        log.write_text(first + log.read_text())
    text = report(str(sweep))
    assert table(text, "## Per arm") == before
    assert (
        "the mean of each run's last 3 validation rows, step 1's (after one update) left out: "
        "steps 1000, 2000 (the runs have 2 after step 1)." in text
    )


@pytest.mark.slow
def test_an_analysis_chosen_after_the_results_says_so_in_its_answer(sweep, tmp_path):
    """Another K than the plan's, or another plan: the answer says it is an exploratory
    re-analysis, not the pre-registered test (its alpha does not hold for a choice made after
    seeing the results)."""
    from prefix_titan.sweep.analysis import PLAN

    answer = report(str(sweep), checkpoints=1).splitlines()[2]
    assert answer.startswith("**Answer.** (An exploratory re-analysis, not the pre-registered")
    assert "last 1 checkpoints, where the plan says 3" in answer and "Yes, on" in answer
    assert report(str(sweep), checkpoints=1).splitlines()[2] == answer  # (the same: rewritten)
    plan = tmp_path / "plan.toml"
    plan.write_text(open(PLAN).read().replace("alpha = 0.05", "alpha = 0.1"))
    # another re-analysis does not replace the first one in the default folder: refused
    first = (sweep / "report_exploratory" / "report.md").read_text()
    with pytest.raises(ValueError, match="report_exploratory holds another exploratory") as e:
        report(str(sweep), plan=str(plan))
    assert "(another plan's settings; --checkpoints 1 there, 3 here)" in str(e.value)
    assert "--out DIR" in str(e.value) and "report_exploratory_2 say" in str(e.value)
    assert (sweep / "report_exploratory" / "report.md").read_text() == first
    answer = report(str(sweep), str(sweep / "alpha0.1"), plan=str(plan)).splitlines()[2]
    assert "a plan other than the package's (it differs in alpha)" in answer
    # the same analysis asked otherwise (its folder or plan file spelled another way) is the same
    shutil.rmtree(sweep / "report_exploratory")
    report(str(sweep), plan=str(plan))
    spelled = f"{sweep}/../{sweep.name}"
    assert report(spelled, plan=str(tmp_path / "." / "plan.toml")).splitlines()[2] == answer
    with pytest.raises(ValueError, match=r"\(--arms None there, \['ce', 'prefix_tau0.5'\] here\)"):
        report(str(sweep), plan=str(plan), arms=["prefix_tau0.5", "ce"])
    assert not report(str(sweep), checkpoints=3).splitlines()[2].startswith("**Answer.** (An")


@pytest.mark.slow
def test_the_plan_a_sweep_registered_before_its_runs_is_its_pre_registered_plan(
    sweep, tmp_path_factory
):
    """launch registers the plan in the sweep folder before the first run: the report applies
    it as the pre-registered analysis, and any other plan (the package's too) is exploratory.
    A plan is registered once, and not into a folder whose runs began before it."""
    from prefix_titan.sweep.analysis import PLAN, register_plan

    plan = tmp_path_factory.mktemp("plans") / "plan.toml"
    plan.write_text(open(PLAN).read().replace("alpha = 0.05", "alpha = 0.1"))
    assert register_plan(str(sweep), str(plan)) is None  # the runs began before it: none
    new = tmp_path_factory.mktemp("launched") / "sweep"
    path = register_plan(str(new), str(plan), " on a test day")
    assert path == str(new / "analysis_plan.toml")
    assert "registered by `python -m prefix_titan.sweep launch` on a test day" in open(path).read()
    assert register_plan(str(new), str(plan)) == path  # the same plan again: a resumed launch
    with pytest.raises(ValueError, match="the sweep registered another analysis plan"):
        register_plan(str(new), None)
    for run in sweep.iterdir():  # the runs of a sweep launched with that plan
        shutil.move(str(run), str(new / run.name))
    text = report(str(new))
    assert "**Answer.** (An exploratory" not in text
    assert f"The plan the sweep registered when it was launched, before its runs ({path})" in text
    assert "Each family is tested at familywise alpha 0.1;" in text
    assert "Exploratory (an analysis other than" not in text
    answer = report(str(new), plan=PLAN).splitlines()[2]
    assert "a plan other than the one the sweep registered (it differs in alpha)" in answer
    saved = json.loads((new / "report_exploratory" / "report.json").read_text())
    assert saved["registered_plan"] == path and saved["deviations"] and saved["exploratory"]
    claims = (new / "report_exploratory" / "report.md").read_text().split("### Claims")[1]
    assert claims.lstrip().startswith("Exploratory (an analysis other than the pre-registered")
    # the plan's own report is not overwritten by the re-analysis
    assert not json.loads((new / "report" / "report.json").read_text())["deviations"]
    # the registered plan is read-only, and its settings edited after registration are seen
    registered = new / "analysis_plan.toml"
    assert not registered.stat().st_mode & 0o222
    registered.chmod(0o644)
    text = registered.read_text()
    registered.write_text(text + "# a comment changes no setting\n")
    assert "**Answer.** (An exploratory" not in report(str(new))
    registered.write_text(text.replace("alpha = 0.1", "alpha = 0.2"))
    shutil.rmtree(new / "report_exploratory")  # (the package plan's: kept there, else refused)
    answer = report(str(new)).splitlines()[2]
    assert answer.startswith("**Answer.** (An exploratory re-analysis, not the pre-registered")
    assert f"{registered} was edited after the sweep registered it (its settings no longer" in (
        answer
    )
    edited = report(str(new))
    assert f"The plan in the sweep folder ({registered}), which was edited after" in edited
    # a plan without its header and digest (put there by hand after the runs) cannot be checked:
    # its analysis is not taken for the registered one
    registered.write_text("\n".join(text.splitlines()[2:]))
    shutil.rmtree(new / "report_exploratory")  # (alpha 0.2's)
    answer = report(str(new)).splitlines()[2]
    assert answer.startswith("**Answer.** (An exploratory re-analysis, not the pre-registered")
    assert f"{registered} carries no registration header and digest" in answer


def test_a_real_difference_is_claimed_and_an_equal_arm_is_not(sweep):
    text = report(str(sweep))
    answer = text.splitlines()[2]
    assert answer.startswith("**Answer.** Yes, on char composite: prefix_tau0.5 (+0.")
    assert "prefix_norm_tau0.1" not in answer
    claims = text.split("### Claims")[1].split("###")[0]
    assert "prefix_tau0.5 is better than label_smoothing on char composite" in claims
    assert "prefix_tau0.5 is better than label_smoothing on val CE (-0.1" in claims
    assert "prefix_norm_tau0.1" not in claims
    data = json.loads((sweep / "report" / "report.json").read_text())
    assert {(c["arm"], c["metric"], c["direction"], c["primary"]) for c in data["claims"]} >= {
        ("prefix_tau0.5", "char composite", "better", True),
        ("prefix_tau0.5", "val CE", "better", True),
    }
    assert all(c["arm"] == "prefix_tau0.5" for c in data["claims"] if not c["aa_check"])


def test_a_prefix_shaped_gain_does_not_carry_the_character_verdict(tmp_path):
    """An arm better only on the prefix-shaped probes (as a generic lift of prefix tokens would
    make it) gets no character claim: the composite leaves those probes out."""
    from prefix_titan.evaluation.probes import PREFIX_SHAPED

    gains = {t: 0.15 for t in PREFIX_SHAPED}
    for seed in (1, 2, 3):
        make_run(tmp_path, "label_smoothing", {"name": "label_smoothing"}, 0.0, seed=seed)
        make_run(tmp_path, "prefix_tau0.5", {"name": "prefix"}, 0.0, seed=seed, gains=gains)
        make_run(tmp_path, "prefix_tau1.0", {"name": "prefix", "tau": 1.0}, 0.0, seed=seed)
    text = report(str(tmp_path))
    assert "**Answer.** No difference found" in text
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert not [c for c in data["claims"] if c["metric"] == "char composite"]
    shaped = data["per_arm"]["prefix-shaped acc"]
    assert shaped["prefix_tau0.5"]["mean"] > shaped["label_smoothing"]["mean"] + 0.1


@pytest.mark.slow
def test_an_unmeasured_primary_is_no_claim_not_no_difference(tmp_path):
    """Without the character probes on the baseline nothing is compared on the first family's
    primary: the answer says so, not "no difference found"; with one arm unmeasured the answer
    names it and speaks of the arms compared only."""
    a, b = tmp_path / "a", tmp_path / "b"
    for seed in (1, 2, 3):
        unevaluated = dict(seed=seed, eval_kind=None)
        make_run(a, "label_smoothing", {"name": "label_smoothing"}, 0.0, **unevaluated)
        make_run(a, "prefix_tau0.5", {"name": "prefix"}, 0.0, seed=seed)
        make_run(b, "label_smoothing", {"name": "label_smoothing"}, 0.0, seed=seed)
        make_run(b, "prefix_tau0.5", {"name": "prefix"}, 0.0, seed=seed)
        make_run(b, "prefix_tau1.0", {"name": "prefix", "tau": 1.0}, 0.0, **unevaluated)
    answer = report(str(a)).splitlines()[2]
    assert answer.startswith("**Answer.** No claim: char composite is not measured"), answer
    assert "No difference" not in answer
    answer = report(str(b)).splitlines()[2]
    assert answer.startswith(
        "**Answer.** No difference found: no arm compared was shown to differ"
    ), answer
    assert "not measured on every seed: prefix_tau1.0. Reading the word is not shown" in answer
    # (every arm's probes score about their blank twins here: said at the answer's end)


def test_one_seed_says_so_and_claims_nothing(tmp_path):
    for name, (objective, score) in ARMS.items():
        make_run(tmp_path, name, objective, score, seed=1234)
    text = report(str(tmp_path))
    assert table(text, "## Per arm")["ce"][0].endswith("(n=1)")
    assert "**Answer.** No claim can be made: with one seed" in text
    assert json.loads((tmp_path / "report" / "report.json").read_text())["claims"] == []


def test_a_detectable_difference_beyond_a_metrics_widest_is_flagged_impossible(sweep, monkeypatch):
    """report.json's power says `possible: false` where the difference needed is beyond the
    widest the metric allows (an accuracy's 1), as the line says "none (±... needed)"."""
    from prefix_titan.sweep import report as report_module
    from prefix_titan.sweep.analysis import analyse, load_plan
    from prefix_titan.sweep.runs import find_runs, group_arms

    a = analyse(group_arms(find_runs(str(sweep))), load_plan())
    monkeypatch.setattr(report_module, "detectable_here", lambda a, name, k: 1.5)
    power = report_module.power_json(a)
    accuracies = [n for n in power["metrics"] if n in ("downstream acc", "hellaswag", "piqa")]
    assert accuracies, power["metrics"]
    for name in accuracies:
        assert power["metrics"][name]["possible"] is False
        assert any(line.startswith(f"- {name}: none (±1.5000 needed") for line in power["lines"])
    assert power["metrics"]["val CE"]["possible"] is True  # (no widest)


def test_the_power_section_gives_each_primary_its_resolution(sweep):
    text = report(str(sweep))
    power = text.split("## Power")[1].split("##")[0]
    assert "- char composite: ±" in power and "the other 3 arms' pooled run-level sd" in power
    assert "- val CE: ±" in power
    # report.json holds the same: the lines, each metric's detectable difference, and every
    # run's value (a consumer had to parse report.md for them)
    data = json.loads((sweep / "report" / "report.json").read_text())
    assert [line for line in data["power"]["lines"] if line in power] == data["power"]["lines"]
    for name, row in data["power"]["metrics"].items():
        assert f"- {name}: ±{row['detectable']:.4f} ({row['role']}, at alpha/" in power
        assert f"at alpha/{row['alpha_divisor']};" in power
        assert row["possible"] is True  # (a difference beyond a metric's widest: False)
    assert {"char composite", "val CE"} <= set(data["power"]["metrics"])
    assert "over how the test's own estimate of that error varies" in power
    for name, by_arm in data["per_run"].items():
        for arm, by_seed in by_arm.items():
            interval = data["per_arm"][name][arm]  # (None: no value)
            assert (interval is None) is (not by_seed)
            if by_seed:
                mean = interval["mean"]
                assert math.isclose(sum(by_seed.values()) / len(by_seed), mean, rel_tol=1e-12)
    assert set(data["per_run"]["val CE"]["ce"]) == {"1", "2", "3"}


def test_a_compared_metric_without_variance_is_said_in_the_power_section(sweep, monkeypatch):
    """A metric the runs measured no variance of (arc_easy at 0.4333 in every run of a smoke
    sweep) was left out of the section without a word: it is named, with why."""
    import prefix_titan.sweep.report as reporting

    monkeypatch.setattr(reporting, "detectable_here", lambda a, name, k: None)
    monkeypatch.setattr(reporting, "apart_here", lambda a, name: None)
    power = report(str(sweep)).split("## Power")[1].split("##")[0]
    assert "- char composite: none to state (primary, at alpha/" in power
    assert "the runs measured no variance of it: every arm's value is the same" in power


@pytest.mark.slow
def test_seeds_may_differ_between_runs_other_settings_may_not(sweep):
    text = report(str(sweep))
    assert "All runs share every setting outside [objective]" in text and "debug.seed" not in text
    assert "**Warning.** The runs are not matched" not in text
    make_run(sweep, "prefix_tau1.0", {"name": "prefix", "tau": 1.0}, 0.0, seed=1, lr=3e-4)
    for seed in (2, 3):
        make_run(sweep, "prefix_tau1.0", {"name": "prefix", "tau": 1.0}, 0.0, seed=seed)
    text = report(str(sweep))
    assert "`optimizer.lr` differs from 0.001 in: prefix_tau1.0 seed 1 (0.0003)" in text
    answer, warning = text.split("\n\n")[1:3]  # right under the answer
    assert answer.startswith("**Answer.**") and warning.startswith(
        "**Warning.** The runs are not matched: 1 difference besides the objectives and the seeds"
    )


@pytest.mark.slow
def test_arms_must_compute_the_loss_the_same_way(tmp_path):
    """objective.fused_loss, fused_chunk_tokens and kernel sit in [objective] but are not the
    objective."""
    make_run(tmp_path, "ce", {"name": "ce"}, 0.0)
    make_run(tmp_path, "label_smoothing", {"name": "label_smoothing", "kernel": "triton"}, 0.0)
    make_run(tmp_path, "prefix_tau0.5", {"name": "prefix", "fused_loss": True}, 0.0)
    make_run(
        tmp_path, "prefix_tau1.0", {"name": "prefix", "tau": 1.0, "fused_chunk_tokens": 4096}, 0.0
    )
    text = report(str(tmp_path))
    assert "`objective.fused_chunk_tokens` differs from None in: prefix_tau1.0 seed 1234" in text
    assert "`objective.kernel` differs from 'auto' in: label_smoothing seed 1234" in text
    assert "`objective.fused_loss` differs from False in: prefix_tau0.5 seed 1234" in text
    assert "objective.tau" not in text.split("## Per arm")[0]


def test_arms_with_other_seeds_or_a_repeated_seed_are_refused(sweep, tmp_path_factory):
    make_run(sweep, "prefix_tau1.0", {"name": "prefix", "tau": 1.0}, 0.0, seed=1)
    with pytest.raises(ValueError, match="not run with the same seeds") as e:
        report(str(sweep))
    assert "prefix_tau1.0: seeds 1\n" in str(e.value) and "ce: seeds 1, 2, 3" in str(e.value)
    other = tmp_path_factory.mktemp("repeated")
    make_run(other, "ce", {"name": "ce"}, 0.0, seed=5)
    make_run(other / "again", "ce", {"name": "ce"}, 0.0, seed=5)
    with pytest.raises(ValueError, match="two runs of arm ce with seed 5"):
        report(str(other))


@pytest.mark.slow
def test_a_missing_run_is_reported_on_the_complete_seeds_a_chosen_subset_is_exploratory(sweep):
    for seed in (1, 2):  # seed 3 of this arm crashed
        make_run(sweep, "prefix_tau1.0", {"name": "prefix", "tau": 1.0}, 0.0, seed=seed)
    with pytest.raises(ValueError, match=r"report the seeds every arm has \(--seeds 1 2\)") as e:
        report(str(sweep))
    assert f"or leave out the arms that miss runs (--arms {' '.join(ARMS)}: an exploratory" in (
        str(e.value)
    )
    text = report(str(sweep), seeds=[1, 2])
    assert text.startswith("# Sweep report: 5 arms × 2 seeds (1, 2)")
    assert "**Answer.** (An exploratory" not in text
    assert "Left out of this report (4 runs): ce seed 3, label_smoothing seed 3," in text
    assert "Seed 3 left out because a reported arm has no run there" in text
    saved = json.loads((sweep / "report" / "report.json").read_text())
    assert saved["seeds"] == [1, 2] and saved["deviations"] == []
    assert {(r["arm"], r["seed"]) for r in saved["left_out"]} == {(arm, 3) for arm in ARMS}
    # leaving out the incomplete arm instead changes the family: exploratory
    text = report(str(sweep), arms=list(ARMS))
    assert text.startswith("# Sweep report: 4 arms × 3 seeds")
    assert (
        "**Answer.** (An exploratory re-analysis, not the pre-registered test: arms left " in text
    )
    assert "arms left out (prefix_tau1.0)" in text
    # and so does leaving out a seed every reported arm has
    text = report(str(sweep), str(sweep / "seeds13"), seeds=[1, 3], arms=list(ARMS))
    assert "seeds at which every reported arm has a run left out (2)" in text
    assert "Seed 2 left out because" not in text


@pytest.mark.parametrize(
    "subset, message",
    [
        ({"seeds": [9]}, "--seeds 9: no run has that; the runs have 1, 2, 3"),
        ({"seeds": [10, 9]}, "--seeds 10 9: no run has these; the runs have 1, 2, 3"),
        ({"arms": ["ce", "cee"]}, "--arms cee: no run has that; the runs have ce, label_smoothing"),
    ],
)
def test_a_subset_naming_no_run_is_refused(sweep, subset, message):
    with pytest.raises(ValueError) as e:
        report(str(sweep), **subset)
    assert message in str(e.value)
    assert not (sweep / "report").exists()


def test_a_contrast_kind_without_an_arm_is_noted(tmp_path, capsys):
    from prefix_titan.report import main

    for name, (objective, score) in list(ARMS.items())[:3]:  # no prefix_norm arm
        make_run(tmp_path, name, objective, score)
    main([str(tmp_path), "--no-figures"])
    out = capsys.readouterr()
    assert "the plan's contrast names prefix_norm, of which the sweep has no arm" in out.out
    assert "(and report.json)" in out.err and "plots" not in out.err
    text = report(str(tmp_path), arms=["label_smoothing"])
    assert "- character knowledge: the sweep has no arm of the contrast's kinds (prefix, " in text


def test_missing_evaluations_are_listed(tmp_path):
    """A run without evaluation results is named under the answer (not among the compute-matched
    invariants), with the command that evaluates it as the other runs were."""
    from prefix_titan.sweep.report import eval_tasks
    from prefix_titan.sweep.runs import find_runs

    make_run(tmp_path, "ce", {"name": "ce"}, 0.0, eval_kind="none")
    text = report(str(tmp_path))
    said = next(x for x in text.splitlines() if x.startswith("**Not evaluated.** "))
    assert said.startswith("**Not evaluated.** No evaluation results yet for: ce seed 1234. ")
    folder = tmp_path / "ce" / "seed1234"
    assert f"`python -m prefix_titan.eval --all-checkpoints {folder} --tasks pilot`" in said
    assert text.index(said) < text.index("## Analysis plan")
    invariants = text.split("## Compute-matched invariants")[1].split("\n## ")[0]
    assert "No evaluation results" not in invariants
    other = tmp_path / "other"
    make_run(other, "label_smoothing", {"name": "label_smoothing"}, 0.0, seed=1)
    make_run(other, "prefix_tau0.5", {"name": "prefix"}, 0.0, seed=1, eval_kind="none")
    assert eval_tasks(find_runs(str(other))) == "pilot"  # (make_run evaluates them all)
    assert f"--all-checkpoints {other / 'prefix_tau0.5' / 'seed1'} --tasks pilot`" in (
        report(str(other))
    )
    from prefix_titan.evaluation.probes import BLANK_TASKS, PROBE_TASKS

    results = {t: {} for t in ("piqa", "hellaswag", *PROBE_TASKS, *BLANK_TASKS)}
    assert eval_tasks([{"steps": {1200: {"results": results}}}]) == "hellaswag piqa char_probes"
    assert eval_tasks([{"steps": {1200: {"results": {"piqa": {}}}}}]) == "piqa"
    # the sample the other runs were evaluated on (a full evaluation would not pair with them)
    step = {"results": {"piqa": {}}, "sample": {(50, 1234)}}
    assert eval_tasks([{"steps": {1200: step}}]) == "piqa --limit 50"
    step["sample"] = {(50, 7)}
    assert eval_tasks([{"steps": {1200: step}}]) == "piqa --limit 50 --limit-seed 7"
    step["sample"] |= {(None, None)}  # (evaluated alike nowhere: no sample said)
    assert eval_tasks([{"steps": {1200: step}}]) == "piqa"
    step = {"results": results, "sample": {(None, None)}, "probe_items": {"char_spell": 500}}
    assert eval_tasks([{"steps": {1200: step}}]) == "hellaswag piqa char_probes --probe-items 500"
    # tasks the others read from --data-dir files: the command reads the same (not the hub)
    step = {"results": {"piqa": {}}, "versions": {"piqa": "1.0 ascii data sha256:0123abcd"}}
    assert eval_tasks([{"steps": {1200: step}}]) == "piqa --data-dir DIR"
    smoke = {"job": {"description": "prefix_titan smoke sweep arm (see [objective])"}}
    assert eval_tasks([{"steps": {}, "config": smoke}]) == "char_probes embedding_probe --limit 50"
    assert eval_tasks([{"steps": {}, "config": {}}]) == "pilot"
    per_arm = table(text, "## Per arm")  # the columns no arm has a value of: named, not drawn
    assert per_arm["ce"][0].startswith("3.") and len(per_arm["ce"]) == 1  # val CE alone
    assert "Measured for no arm, left out: char composite; downstream bits/byte; char acc; " in text


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no runs"):
        report(str(tmp_path))


def test_position_weighted_and_user_family_arms_are_named(tmp_path):
    make_run(tmp_path, "ce", {"name": "ce"}, 0.0)
    make_run(tmp_path, "ce_gamma", {"name": "ce", "position_gamma": 0.99}, 0.01)
    make_run(tmp_path, "suffix", {"name": "my_lab.targets:suffix_targets"}, 0.02)
    text = report(str(tmp_path))
    assert list(table(text, "## Per arm")) == [
        "ce",
        "ce_gamma0.99",
        "my_lab.targets:suffix_targets",
    ]
    assert "All runs share every setting outside [objective]" in text


def test_evaluations_of_one_step_from_several_places_are_merged(tmp_path):
    # eval --all-checkpoints wrote the downstream tasks; a later eval of an export, filed with
    # the run, added the character probes for the same step.
    folder = make_run(tmp_path, "ce", {"name": "ce"}, 0.0, eval_kind="curve")
    curve = json.loads((folder / "eval_curve.json").read_text())
    probes = {t: v for t, v in curve["2000"].items() if t.startswith("char_")}
    curve["2000"] = {t: v for t, v in curve["2000"].items() if t not in probes}
    (folder / "eval_curve.json").write_text(json.dumps(curve))
    (folder / "evals" / "step-2000").mkdir(parents=True)
    (folder / "evals" / "step-2000" / "eval_results.json").write_text(
        json.dumps({"results": probes})
    )
    assert probes and curve["2000"]
    text = report(str(tmp_path))
    header = text.split("## Per arm")[1].split("\n\n")[1].splitlines()[0]
    columns = [c.strip() for c in header.split("|")[2:-1]]
    cells = dict(zip(columns, table(text, "## Per arm")["ce"]))
    # Everything but bits/byte, which comes from per-item outcomes (this curve has none).
    assert all(v != "-" for k, v in cells.items() if not k.endswith("bits/byte")), cells


def test_t_interval_by_hand():
    iv = t_interval([1.0, 2.0, 3.0, 4.0])
    half = student_t.ppf(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2
    assert (iv.mean, iv.low, iv.high, iv.n) == pytest.approx((2.5, 2.5 - half, 2.5 + half, 4))
    assert t_interval([7.0]).low is None and not t_interval([7.0]).excludes_zero
    # seeds that agree (a probe's accuracy on 24 items): no interval, not a width of 0
    equal = t_interval([0.4167, 0.4167, 0.4167])
    assert (equal.low, equal.high, equal.n) == (None, None, 3)
    from prefix_titan.sweep.report import _cell

    assert _cell({"mean": 0.4167, "low": None, "high": None, "n": 3}, 3) == "0.4167 [-, -]"
    assert _cell({"mean": 0.4167, "low": None, "high": None, "n": 1}, 3) == "0.4167 (n=1)"


def test_a_crash_mid_append_costs_the_torn_line_only(sweep):
    """A run killed while appending a metrics row: the report reads the rows before it, and the
    resumed run's first append starts a line of its own."""
    from prefix_titan.runs.folder import drop_torn_line, read_log

    log = sweep / "ce" / "seed1" / METRICS_LOG
    rows = read_log(str(log))
    with open(log, "a") as f:
        f.write('{"step": 3000, "validation_pla')  # the crash
    assert read_log(str(log)) == rows
    report(str(sweep))  # reads the run as it was
    drop_torn_line(str(log))
    with open(log, "a") as f:
        f.write(json.dumps({"step": 3000, "loss": 4.0}) + "\n")
    assert read_log(str(log)) == rows + [{"step": 3000, "loss": 4.0}]
    drop_torn_line(str(log))  # a whole file is left as it is
    assert read_log(str(log)) == rows + [{"step": 3000, "loss": 4.0}]


def test_run_files_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    import os

    from prefix_titan.runs.folder import write_json

    path = tmp_path / "eval_results.json"
    write_json(str(path), {"a": 1})

    def crash(*args):
        raise OSError("no space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_json(str(path), {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}  # the old file, whole
    monkeypatch.undo()
    write_json(str(path), {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval_results.json"]


def test_counts_of_one_read_in_the_singular(tmp_path):
    for seed in (1, 2):
        make_run(tmp_path, "label_smoothing", {"name": "label_smoothing"}, 0.0, seed=seed)
        make_run(tmp_path, "prefix_tau0.5", {"name": "prefix", "tau": 0.5}, 0.0, seed=seed)
    text = report(str(tmp_path))
    assert "pooled over 2 arms, 1 degree of freedom; with 80% power over" in text
    assert "1 degrees" not in text and "1 arms" not in text
    one = tmp_path / "one"
    make_run(one, "ce", {"name": "ce"}, 0.0)
    assert report(str(one)).startswith("# Sweep report: 1 arm × 1 seed (1234)")


def test_an_empty_power_section_says_why_in_one_line(tmp_path):
    make_run(tmp_path, "ce", {"name": "ce"}, 0.0, seed=1)
    make_run(tmp_path, "ce", {"name": "ce"}, 0.0, seed=2)
    power = report(str(tmp_path)).split("## Power\n\n")[1].split("\n\n## ")[0].strip()
    assert power == "Nothing to show: the sweep has no label_smoothing arm, so nothing is compared."
    other = tmp_path / "baselines"
    for seed in (1, 2):
        for arm in ("ce", "label_smoothing"):
            make_run(other, arm, {"name": arm}, 0.0, seed=seed)
    power = report(str(other)).split("## Power\n\n")[1].split("\n\n## ")[0].strip()
    assert power.startswith("Nothing to show: no arm of prefix") and "\n" not in power


def test_nothing_to_plot_leaves_the_figure_out_and_says_so(tmp_path, recwarn, caplog):
    import logging

    for arm in ("ce", "label_smoothing", "prefix_tau0.5"):
        objective = {"name": "prefix", "tau": 0.5} if arm.startswith("prefix") else {"name": arm}
        folder = make_run(tmp_path, arm, objective, 0.0, eval_kind="none")
        (folder / METRICS_LOG).write_text(json.dumps({"step": 10, "loss": 5.0}) + "\n")
    with caplog.at_level(logging.WARNING):
        text = report(str(tmp_path), figures=True)
    assert not (tmp_path / "report" / "validation_ce.png").exists()
    assert not (tmp_path / "report" / "differences_vs_tau.png").exists()
    assert "Not plotted: the validation CE curves (no arm has validation rows" in text
    assert "Not plotted: the difference from label_smoothing along tau for" in text
    assert ".png)" not in text
    legend = [r for r in caplog.records if "legend" in r.getMessage()]
    assert not legend and not [w for w in recwarn if "legend" in str(w.message)]


@pytest.mark.slow
def test_unfinished_runs_are_marked(sweep):
    text = report(str(sweep))
    assert "**Unfinished: 12 runs** below the configured training.steps" in text
    assert "ce seed 1 (step 2000 of 38150)" in text
    # said beside the answer, before any number it qualifies
    assert text.index("**Answer.**") < text.index("**Unfinished") < text.index("## Analysis plan")
    data = json.loads((sweep / "report" / "report.json").read_text())
    assert {"arm": "ce", "seed": 1, "last_step": 2000, "steps": 38150} in data["unfinished_runs"]
    from prefix_titan.runs.checkpoints import DCP_METADATA

    for config_file in sweep.glob("*/seed*/run_config.json"):
        config = json.loads(config_file.read_text())
        config["training"]["steps"] = 3000
        config_file.write_text(json.dumps(config))
        step = config_file.parent / config["checkpoint"]["folder"] / "step-3000"
        step.mkdir(parents=True)
        (step / DCP_METADATA).write_text("")  # the final step's checkpoint is complete
    ce = sweep / "ce" / "seed1" / "checkpoint" / "step-3000" / DCP_METADATA
    ce.unlink()
    text = report(str(sweep))
    assert "**Unfinished: 1 run** below the configured training.steps" in text
    assert "ce seed 1 (step 2000 of 3000)." in text


def test_an_exported_model_is_counted_at_the_step_its_record_names(tmp_path):
    """An export's folder name is the user's; the step is the one its export_source.json records.
    A model exported from another run (or from none) inside this run folder is refused."""
    import shutil

    from prefix_titan.sweep.runs import load_run

    run = make_run(tmp_path / "a", "ce", {"name": "ce"}, 0.0)
    shutil.move(run / "hf" / "step-2000", run / "hf" / "step-10")  # named after the wrong step
    record = {"run_dir": str(run), "checkpoint": str(run / "checkpoint" / "step-2000")}
    (run / "hf" / "step-10" / "export_source.json").write_text(json.dumps({**record, "step": 2000}))
    assert sorted(load_run(str(run))["steps"]) == [2000]

    copy = tmp_path / "copied"  # the same run copied elsewhere: its exports still count
    shutil.copytree(run, copy)
    assert sorted(load_run(str(copy))["steps"]) == [2000]
    moved = tmp_path / "moved"
    shutil.move(copy, moved)
    assert sorted(load_run(str(moved))["steps"]) == [2000]

    other = make_run(tmp_path / "b", "label_smoothing", {"name": "label_smoothing"}, 0.0)
    stray = run / "hf" / "other"
    shutil.copytree(other / "hf" / "step-2000", stray)
    (stray / "export_source.json").write_text(json.dumps({"run_dir": str(other), "step": 2000}))
    with pytest.raises(ValueError, match=r"exported from another run \(.*b/label_smoothing"):
        load_run(str(run))
    (stray / "export_source.json").write_text(json.dumps({"run_dir": None, "step": 2000}))
    with pytest.raises(ValueError, match=r"exported from no recorded run, inside the run folder"):
        load_run(str(run))


@pytest.mark.slow
def test_sampled_evaluations_and_fewer_checkpoints_are_said(sweep):
    text = report(str(sweep))
    # one evaluated step per run, where the plan averages three; every item read
    assert "Each run has 1 evaluated checkpoint, where the analysis averages the last 3" in text
    assert "Evaluated checkpoints averaged (every run's 1, fewer than the last 3): " in text
    text = report(str(sweep), checkpoints=2)  # (the number the analysis took, not the plan's)
    assert "Each run has 1 evaluated checkpoint, where the analysis averages the last 2" in text
    text = report(str(sweep))
    assert "--limit sample" not in text
    assert json.load(open(sweep / "report" / "report.json"))["sampled_tasks"] == {}
    for results in sweep.glob("*/seed*/hf/step-2000/eval_results.json"):
        data = json.loads(results.read_text())
        sample = {"limit": 20, "limit_seed": 1234, "limit_sampling": "stratified by gold"}
        results.write_text(json.dumps({**data, **sample}))
    text = report(str(sweep))
    assert "Evaluated on a --limit sample of items, not the whole task: arc_challenge 20" in text
    sampled = json.load(open(sweep / "report" / "report.json"))["sampled_tasks"]
    # the embedding probe reads every word-like token whatever the --limit
    assert sampled["char_spell"] == "20 (--limit-seed 1234)" and "embedding_probe" not in sampled
    assert "the plan averages" not in report(str(sweep), str(sweep / "k1"), checkpoints=1)
    assert "smoke sweep's description" not in text
    for record in sweep.glob("*/seed*/run_config.json"):  # runs of the smoke sweep's configs
        config = json.loads(record.read_text())
        config["job"]["description"] = "prefix_titan smoke sweep arm (see [objective])"
        record.write_text(json.dumps(config))
        training = config.get("training") or {}
    text = report(str(sweep))
    assert "their numbers and claims say nothing about the objectives" in text
    # what the runs recorded, not what the smoke sweep would train (a copy may train other data)
    said = f"These runs carry the smoke sweep's description (flavor {config['model']['flavor']}"
    assert said in text and f"on {training['dataset']})" in text
    from prefix_titan.sweep import report as report_module

    base = ROOT / "prefix_titan" / "sweep" / "bases" / "smoke.toml"  # a template, not TOML yet
    assert f'description = "{report_module.SMOKE_DESCRIPTION}"' in base.read_text().splitlines()


@pytest.mark.slow
def test_a_probe_whose_shortcut_check_found_a_leak_is_named(sweep):
    """An evaluation records the shortcut check of the probes it built (harness.probe_checks);
    the report names a probe whose check found a shortcut in an averaged step, with the highest
    accuracy and how many evaluations found it, and says nothing where every check passed."""
    from prefix_titan.evaluation.probes import PROBE_TASKS

    files = sorted(sweep.glob("*/seed*/hf/step-2000/eval_results.json"))

    def record(leaky: int) -> None:
        for k, results in enumerate(files):
            data = json.loads(results.read_text())
            data["probe_check"] = {
                t: {"items": 2000, "chance": 0.25, "bound": 0.05, "off": {}} for t in PROBE_TASKS
            }
            if k < leaky:
                off = {"lookup: word length": 0.31 + k / 100, "shortest choice": 0.4}
                data["probe_check"]["char_last_letter"]["off"] = off
            results.write_text(json.dumps(data))

    record(0)
    text = report(str(sweep))
    assert "shortcut check" not in text
    assert json.load(open(sweep / "report" / "report.json"))["probe_leaks"] == []
    record(2)
    text = report(str(sweep))
    line = (
        "char_last_letter (chance 0.250) by 'lookup: word length' at up to 0.320, 'shortest "
        f"choice' at up to 0.400 in 2 of {len(files)} evaluations"
    )
    assert f"found them answered without reading the word: {line}." in text
    assert json.load(open(sweep / "report" / "report.json"))["probe_leaks"] == [line]


def test_an_arm_without_a_tau_in_its_name_has_no_tau_axis(tmp_path):
    """A family of one's own in the contrast: its records hold the default tau (every run
    records every setting), but its name has no tau part, so it is not drawn against τ."""
    from prefix_titan.sweep.analysis import analyse, load_plan
    from prefix_titan.sweep.runs import find_runs, group_arms

    for seed in (1, 2):
        make_run(tmp_path, "ls", {"name": "label_smoothing"}, 0.0, seed=seed)
        make_run(tmp_path, "p2", {"name": "prefix", "tau": 0.2}, 0.01, seed=seed)
        own = {"name": "my_lab.targets:f", "options": "p=2.0"}
        make_run(tmp_path, "own", own, 0.02, seed=seed)
    plan = dataclasses.replace(load_plan(), contrast=("prefix", "my_lab.targets:f_p2.0"))
    a = analyse(group_arms(find_runs(str(tmp_path))), plan)
    assert a.along == {"label_smoothing": None, "prefix_tau0.2": 0.2, "my_lab.targets:f_p2.0": None}
    assert [c.arm for c in a.comparisons if c.primary and not c.aa_check and not c.final][:2] == [
        "prefix_tau0.2",
        "my_lab.targets:f_p2.0",
    ]


def test_a_family_that_says_it_reads_tau_is_on_the_tau_axis_at_its_default(monkeypatch):
    """A family of one's own whose `reads` names tau lies on the tau axis at the tau it trained
    with, shown in its name or not; one that does not say so, only where its name shows it; a
    family that does not import here, by its name alone."""
    import sys

    from prefix_titan.sweep.analysis import axis_value

    module = type(sys)("reads_lab")
    module.hears = lambda texts, spec: None
    module.hears.reads = ("tau",)
    module.any = lambda texts, spec: None
    monkeypatch.setitem(sys.modules, "reads_lab", module)
    assert axis_value({"name": "reads_lab:hears", "tau": 0.5}) == 0.5
    assert axis_value({"name": "reads_lab:hears", "tau": 2.0}) == 2.0
    assert axis_value({"name": "reads_lab:hears", "tau": 0.5}, "epsilon") is None
    assert axis_value({"name": "reads_lab:any", "tau": 0.5}) is None
    assert axis_value({"name": "reads_lab:any", "tau": 2.0}) == 2.0
    assert axis_value({"name": "gone_lab_xyz:f", "tau": 0.5}) is None
    assert axis_value({"name": "gone_lab_xyz:f", "tau": 2.0}) == 2.0


AXIS_FAMILY = """
def f(texts, spec, *, p=1.0, mode="a"):
    raise AssertionError("the report reads the family's defaults, never its table")


def g(texts, spec, *, r=1.0):
    raise AssertionError("the report reads the family's defaults, never its table")
"""


@pytest.fixture
def axis_family(tmp_path, monkeypatch):
    """A family of one's own with a number setting `p` (default 1.0) and a word `mode`."""
    import sys

    (tmp_path / "axis_lab").mkdir()
    (tmp_path / "axis_lab" / "__init__.py").write_text("")
    (tmp_path / "axis_lab" / "targets.py").write_text(AXIS_FAMILY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "axis_lab.targets:f"
    for name in ("axis_lab.targets", "axis_lab"):
        sys.modules.pop(name, None)


def _axis_plan(tmp_path, axis: str, scale: str | None = None, contrast=("axis_lab.targets:f",)):
    from prefix_titan.sweep.analysis import PLAN

    text = (
        open(PLAN)
        .read()
        .replace('contrast = ["prefix", "prefix_norm"]', f"contrast = {json.dumps(list(contrast))}")
    )
    text = text.replace("\ncontrast =", f'\naxis = "{axis}"\ncontrast =', 1)
    if scale:
        text = text.replace("\ncontrast =", f'\naxis_scale = "{scale}"\ncontrast =', 1)
    path = tmp_path / f"plan_{axis}_{scale}.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.slow
def test_a_family_setting_of_its_own_is_the_trend_axis(tmp_path, axis_family):
    """A plan's `axis = "options.p"`: the arms of a family of one's own at p = 1 (its default,
    left out of the name), 2 and 4 are one kind, and the trend along log p finds the slope
    planted in validation CE; the figure is drawn along p and an earlier figure along tau goes."""
    from prefix_titan.sweep.analysis import analyse, load_plan
    from prefix_titan.sweep.runs import find_runs, group_arms

    runs = tmp_path / "runs"
    for seed in (1, 2, 3):
        make_run(runs, "ls", {"name": "label_smoothing"}, 0.0, seed=seed)
        for p in (1.0, 2.0, 4.0):
            own = {"name": axis_family, **({"options": f"p={p!r}"} if p != 1.0 else {})}
            make_run(runs, f"p{p}", own, 0.05 * np.log(p), seed=seed)
    plan = _axis_plan(tmp_path, "options.p")
    a = analyse(group_arms(find_runs(str(runs))), load_plan(plan))
    arms = [axis_family, f"{axis_family}_p2.0", f"{axis_family}_p4.0"]
    assert {k: a.kinds[k] for k in arms} == dict.fromkeys(arms, axis_family)
    assert a.along == {"label_smoothing": None, **dict(zip(arms, (1.0, 2.0, 4.0)))}
    (trend,) = [t for t in a.trends if t["metric"] == "val CE"]
    assert trend["arms"] == arms and trend["axis"] == "options.p"
    assert -0.08 < trend["estimate"] < -0.02 and trend["high"] < 0  # val CE = 3.75 - 0.05 log p
    out = runs / "report"
    out.mkdir()
    (out / "differences_vs_tau.png").write_bytes(b"an earlier report's")
    text = report(str(runs), out=str(out), plan=plan, figures=True)
    assert "| family | metric | kind | slope per ln options.p [95% CI] | p | Holm p |" in text
    assert "### Trend along options.p" in text and "Trend slopes: per unit of ln options.p." in text
    assert "Trend (reported, not claimed): along options.p, log scale." in text
    assert (out / "differences_vs_p.png").stat().st_size > 5000
    assert not (out / "differences_vs_tau.png").exists()


@pytest.mark.slow
def test_a_sweep_whose_arms_lie_on_no_axis_has_no_trend_section(tmp_path, axis_family):
    """A family of one's own that reads no tau, under a plan on tau: the report has no trend
    section and no slopes' unit, and its notes say why."""
    runs = tmp_path / "runs"
    for seed in (1, 2, 3):
        make_run(runs, "ls", {"name": "label_smoothing"}, 0.0, seed=seed)
        make_run(runs, "own", {"name": axis_family, "options": "mode=b"}, 0.01, seed=seed)
    plan = _axis_plan(tmp_path, "tau", contrast=(f"{axis_family}_modeb",))
    text = report(str(runs), out=str(tmp_path / "out"), plan=plan)
    assert "### Trend along" not in text and "Trend slopes" not in text
    assert "no trend along the plan's axis tau: no arm of the contrast" in text
    # one arm on the axis: a trend section that says there is none, and no slopes' unit
    for seed in (1, 2, 3):
        make_run(runs, "p", {"name": "prefix", "position_gamma": 0.99}, 0.01, seed=seed)
    plan = _axis_plan(tmp_path, "tau", contrast=("prefix_gamma0.99",))
    text = report(str(runs), out=str(tmp_path / "out2"), plan=plan)
    assert "### Trend along τ" in text and "No trend along tau: no kind" in text
    assert "Trend slopes" not in text


def test_a_plan_whose_contrast_lies_on_no_axis_announces_no_trend(tmp_path, axis_family):
    """The plan section of a sweep whose contrast is a family that reads no tau, under a plan on
    tau, says no arm lies on the axis instead of announcing a trend along it, as its notes do."""
    runs = tmp_path / "runs"
    for seed in (1, 2):
        make_run(runs, "ls", {"name": "label_smoothing"}, 0.0, seed=seed)
        make_run(runs, "own", {"name": axis_family, "options": "mode=b"}, 0.01, seed=seed)
    plan = _axis_plan(tmp_path, "tau", contrast=(f"{axis_family}_modeb",))
    text = report(str(runs), out=str(tmp_path / "out"), plan=plan)
    assert "Trend (reported, not claimed)" not in text
    assert "Trend: none, no arm of the contrast lies on the plan's axis tau." in text
    assert "no trend along the plan's axis tau: no arm of the contrast" in text


def test_an_axis_at_zero_needs_a_linear_scale(tmp_path, axis_family):
    from prefix_titan.sweep.analysis import analyse, load_plan
    from prefix_titan.sweep.runs import find_runs, group_arms

    for seed in (1, 2):
        make_run(tmp_path, "ls", {"name": "label_smoothing"}, 0.0, seed=seed)
        for p in (0.0, 1.0, 2.0):
            make_run(tmp_path, f"p{p}", {"name": axis_family, "options": f"p={p}"}, 0.0, seed=seed)
    runs = group_arms(find_runs(str(tmp_path)))
    a = analyse(runs, load_plan(_axis_plan(tmp_path, "options.p")))  # the claims all the same
    assert not a.trends and set(a.along.values()) == {None} and a.comparisons
    assert (
        "no trend along the plan's axis options.p: axis_lab.targets:f_p0.0 (0) at or below 0 on "
        'its log scale (axis_scale = "linear" fits them)'
    ) in a.notes
    a = analyse(runs, load_plan(_axis_plan(tmp_path, "options.p", "linear")))
    assert sorted(a.along.values(), key=str) == [0.0, 1.0, 2.0, None]
    assert {t["axis_scale"] for t in a.trends} == {"linear"}
    assert all(t["values"] == [0.0, 1.0, 2.0] for t in a.trends) and a.trends  # in report.json


def test_a_trend_along_position_gamma_fits_ln_of_one_minus_it(tmp_path):
    """`axis_scale = "log_one_minus"`: the trend along position_gamma 0.9, 0.99, 0.999 is
    fitted on ln(1 - gamma), where they lie evenly (on ln gamma, 0.9 lies 10x farther from the
    others and drives the line); a value of 1 is off that scale, said."""
    from prefix_titan.sweep.analysis import analyse, load_plan
    from prefix_titan.sweep.report import trend_lines
    from prefix_titan.sweep.runs import find_runs, group_arms

    gammas = (0.9, 0.99, 0.999)
    for seed in (1, 2):
        make_run(tmp_path, "label_smoothing", {"name": "label_smoothing"}, 0.0, seed=seed)
        for g in gammas:  # validation CE lower by 0.1 per unit of -ln(1 - gamma), and noise
            objective = {"name": "prefix", "tau": 0.5, "position_gamma": g}
            make_run(tmp_path, f"g{g}", objective, -0.1 * math.log(1 - g), seed=seed)
    plan = _axis_plan(tmp_path, "position_gamma", "log_one_minus", contrast=("prefix_tau0.5",))
    a = analyse(group_arms(find_runs(str(tmp_path))), load_plan(plan))
    table = a.tables["val CE"]
    arms = [f"prefix_tau0.5_gamma{g}" for g in gammas]
    base = np.mean(list(table["label_smoothing"].values()))
    diffs = [np.mean(list(table[arm].values())) - base for arm in arms]
    (t,) = [t for t in a.trends if t["metric"] == "val CE"]
    assert t["arms"] == arms and t["values"] == list(gammas)
    assert t["axis_scale"] == "log_one_minus"
    fitted = np.polyfit([math.log(1 - g) for g in gammas], diffs, 1)[0]
    assert t["estimate"] == pytest.approx(fitted) and t["estimate"] == pytest.approx(0.1, abs=0.02)
    lines = "\n".join(trend_lines(a))
    assert "slope per ln(1 - position_gamma) [95% CI]" in lines
    # the slope's sign read against the figure, whose x runs the other way
    assert "a positive slope means the difference falls as position_gamma rises" in lines
    from prefix_titan.sweep.report import units_line

    assert "val CE: nats per token of plain CE, every position weighing 1" in units_line(a)
    plan_ln = _axis_plan(tmp_path, "position_gamma", contrast=("prefix_tau0.5",))
    on_ln = analyse(group_arms(find_runs(str(tmp_path))), load_plan(plan_ln))
    (t,) = [t for t in on_ln.trends if t["metric"] == "val CE"]
    assert t["estimate"] == pytest.approx(np.polyfit([math.log(g) for g in gammas], diffs, 1)[0])
    make_run(tmp_path, "g1", {"name": "prefix", "tau": 0.5, "position_gamma": 1.0}, 0.0, seed=1)
    make_run(tmp_path, "g1", {"name": "prefix", "tau": 0.5, "position_gamma": 1.0}, 0.0, seed=2)
    a = analyse(group_arms(find_runs(str(tmp_path))), load_plan(plan))
    # gamma = 1 (weights k) is compared, on no point of the line: the trend keeps the others
    (t,) = [t for t in a.trends if t["metric"] == "val CE"]
    assert t["arms"] == arms and a.along["prefix_tau0.5_gamma1.0"] is None
    assert "prefix_tau0.5_gamma1.0" in {c.arm for c in a.primary_comparisons("validation CE")}
    assert any(
        n.startswith("prefix_tau0.5_gamma1.0 at position_gamma = 1 (ln(1 - 1) is no number")
        for n in a.notes
    ), a.notes
    from prefix_titan.sweep.analysis import plan_arm_problems

    objectives = {
        arm: runs[1]["objective"] for arm, runs in group_arms(find_runs(str(tmp_path))).items()
    }
    assert plan_arm_problems(load_plan(plan), objectives) == []  # a launch takes it


def test_a_kind_at_fewer_than_three_values_of_the_axis_is_named(tmp_path):
    """A kind of the contrast whose arms lie at fewer than 3 values of the axis has no trend,
    said in a note (it was left out of the trend section without a word), beside the kinds
    that have one."""
    from prefix_titan.sweep.analysis import analyse, load_plan
    from prefix_titan.sweep.runs import find_runs, group_arms

    for seed in (1, 2):
        make_run(tmp_path, "label_smoothing", {"name": "label_smoothing"}, 0.0, seed=seed)
        make_run(tmp_path, "ce", {"name": "ce"}, 0.0, seed=seed)
        make_run(tmp_path, "ceg", {"name": "ce", "position_gamma": 0.9}, 0.01, seed=seed)
        for g in (0.9, 0.99, 0.999):
            objective = {"name": "prefix", "tau": 0.5, "position_gamma": g}
            make_run(tmp_path, f"g{g}", objective, -0.1 * math.log(1 - g), seed=seed)
    plan = _axis_plan(tmp_path, "position_gamma", "log_one_minus", ("prefix_tau0.5", "ce"))
    a = analyse(group_arms(find_runs(str(tmp_path))), load_plan(plan))
    assert {t["kind"] for t in a.trends} == {"prefix_tau0.5"}
    assert (
        "no trend along position_gamma for kind ce: its arms lie at 0.9, and a trend needs arms "
        "at 3 values or more"
    ) in a.notes, a.notes
    assert not any("for kind prefix_tau0.5" in n for n in a.notes)


def test_the_axis_setting_is_checked_and_names_what_it_may_be(tmp_path, axis_family):
    from prefix_titan.sweep.analysis import (
        analyse,
        arm_kind,
        axis_value,
        axis_values,
        load_plan,
        plan_arm_problems,
        unread_axis,
    )
    from prefix_titan.sweep.runs import find_runs, group_arms

    with pytest.raises(
        ValueError, match=r"axis must be tau, epsilon, position_gamma or options\.KEY"
    ):
        load_plan(_axis_plan(tmp_path, "taux"))
    with pytest.raises(
        ValueError, match=r"axis_scale must be log, linear or log_one_minus; got 'sqrt'"
    ):
        load_plan(_axis_plan(tmp_path, "tau", "sqrt"))
    # other settings of the objective as the axis
    gamma = {"name": "prefix", "tau": 0.5, "position_gamma": 0.9}
    assert arm_kind(gamma, "position_gamma") == "prefix_tau0.5"
    assert (
        axis_value(gamma, "position_gamma"),
        axis_value({"name": "prefix"}, "position_gamma"),
    ) == (0.9, None)
    assert arm_kind({"name": "label_smoothing", "epsilon": 0.2}, "epsilon") == "label_smoothing"
    assert axis_value({"name": "label_smoothing"}, "epsilon") == 0.1  # read, at its default
    assert axis_value({"name": "ce"}, "epsilon") is None  # ce does not read it
    with pytest.raises(ValueError, match="prefix is a built-in family, which takes no options"):
        axis_value({"name": "prefix", "tau": 0.2}, "options.p")  # (UndeclaredAxis)
    # a contrast of built-in families only along options.KEY: refused as a typo (it was a note)
    built_in = {"label_smoothing": {"name": "label_smoothing"}, "p": {"name": "prefix"}}
    plan = load_plan(_axis_plan(tmp_path, "options.p", contrast=("prefix_tau0.5",)))
    assert plan_arm_problems(plan, built_in) == [
        "its axis options.p: prefix is a built-in family, which takes no options (options.KEY "
        "is a setting of a family of one's own)"
    ]
    # a word is no axis
    for seed in (1, 2):
        make_run(tmp_path, "ls", {"name": "label_smoothing"}, 0.0, seed=seed)
        make_run(tmp_path, "b", {"name": axis_family, "options": "mode=b"}, 0.0, seed=seed)
        make_run(tmp_path, "a", {"name": axis_family}, 0.0, seed=seed)
    objectives = {
        "label_smoothing": {"name": "label_smoothing"},
        f"{axis_family}_modeb": {"name": axis_family, "options": "mode=b"},
        axis_family: {"name": axis_family},
    }
    plan = load_plan(_axis_plan(tmp_path, "options.mode"))
    problems = plan_arm_problems(plan, objectives)
    assert problems == [
        "its axis options.mode: arm axis_lab.targets:f_modeb sets it to 'b', not a number (a "
        "trend needs numbers)",
        "its axis options.mode: arm axis_lab.targets:f leaves it at its family's default, 'a', "
        "not a number (a trend needs numbers)",
    ]
    notes = analyse(group_arms(find_runs(str(tmp_path))), plan).notes
    assert any(n.startswith("no trend along the plan's axis options.mode: arm") for n in notes)
    # a setting the family does not declare, and an axis no arm of the contrast reads
    (problem,) = plan_arm_problems(load_plan(_axis_plan(tmp_path, "options.q")), objectives)
    assert problem == (
        "its axis options.q: axis_lab.targets:f declares no setting q (its settings: p=1.0, mode=a)"
    )
    # two families of one's own, one declaring p: the other's arms lie off the axis (as a
    # family that does not read tau), not a refusal of the plan that contrasts both
    both = {**objectives, "axis_lab.targets:g": {"name": "axis_lab.targets:g"}}
    two = ("axis_lab.targets:f", "axis_lab.targets:g")
    plan = load_plan(_axis_plan(tmp_path, "options.p", contrast=two))
    assert plan_arm_problems(plan, both) == []
    along, _ = axis_values(plan, both)
    assert along["axis_lab.targets:g"] is None and along[axis_family] == 1.0
    (problem,) = plan_arm_problems(load_plan(_axis_plan(tmp_path, "options.r")), objectives)
    assert "axis_lab.targets:f declares no setting r" in problem  # none declares it: refused
    plan = load_plan(_axis_plan(tmp_path, "position_gamma"))  # compared, with no trend
    assert plan_arm_problems(plan, objectives) == []
    assert unread_axis(plan, objectives) == (
        "no trend along the plan's axis position_gamma: no arm of the contrast "
        f"({axis_family}) lies on it (a built-in family lies on the settings it reads; a family "
        "of one's own, on a setting its arms set away from the default, or on an options.KEY it "
        "declares)"
    )


def test_the_optional_settings_at_their_defaults_keep_a_registered_plans_digest():
    """A plan registered before `axis` existed keeps its digest: the settings at their
    defaults are not hashed."""
    import hashlib

    from prefix_titan.sweep.analysis import PLAN_DEFAULTS, load_plan, plan_digest

    plan = dataclasses.replace(load_plan(), variance="pooled")  # (the package's sets variance)
    assert {k: getattr(plan, k) for k in PLAN_DEFAULTS} == PLAN_DEFAULTS
    old = {k: v for k, v in dataclasses.asdict(plan).items() if k not in ("source", *PLAN_DEFAULTS)}
    assert plan_digest(plan) == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()
    assert plan_digest(dataclasses.replace(plan, axis="epsilon")) != plan_digest(plan)


@pytest.mark.slow
def test_the_power_section_follows_the_plans_variance_rule(sweep, tmp_path):
    """The power reached under variance = baseline_apart is that rule's: a larger detectable
    difference than the pooled rule's, said so on its line."""
    import re

    from prefix_titan.sweep import inference
    from prefix_titan.sweep.analysis import PLAN, analyse, apart_here, load_plan
    from prefix_titan.sweep.runs import find_runs, group_arms

    plan = tmp_path / "pooled.toml"
    plan.write_text(open(PLAN).read().replace('\nvariance = "baseline_apart"\n', "\n", 1))

    def detectable(text: str) -> float:
        power = text.split("## Power\n\n")[1].split("\n\n## ")[0]
        line = next(x for x in power.splitlines() if x.startswith("- val CE:"))
        return float(re.match(r"- val CE: ±([0-9.]+)", line).group(1)), line

    text = report(str(sweep), out=str(tmp_path / "p"), plan=str(plan))
    pooled, line = detectable(text)
    apart_text = report(str(sweep), out=str(tmp_path / "r"))
    apart, apart_line = detectable(apart_text)
    assert "variance apart" not in line and "residual variance pooled over arms)" in text
    assert 'one: the plan\'s variance = "baseline_apart"), nominal 95% interval' in apart_text
    assert apart > 1.2 * pooled
    # the error this sweep measures for the baseline, as its comparisons test it
    runs = group_arms(find_runs(str(sweep)))
    a = analyse(runs, load_plan())
    v = apart_here(a, "val CE")
    assert v is not None and apart_here(analyse(runs, load_plan(str(plan))), "val CE") is None
    # which variance, estimated from this sweep, on how many degrees of freedom; and that a next
    # sweep is planned with `power --from`, not with these lines
    assert apart_line.endswith(
        f"one seed's arm − baseline sd {math.sqrt(v.var):.4f}, as the plan tests, from this "
        f"sweep's own estimates: the other 3 arms' pooled run-level sd {math.sqrt(v.sigma2):.4f} "
        f"on {v.df} degrees of freedom and the baseline's own residual sd "
        f"{math.sqrt(v.baseline2):.4f} on {v.seeds - 1} degrees of freedom; the test's "
        f"{v.test_df:.1f} degrees of freedom; with 80% power over how the test's own estimate of "
        "that error varies, more than a t test at these estimates says)"
    ), apart_line
    assert f"To plan a next sweep use `python -m prefix_titan.power --from {sweep}`, not " in (
        apart_text
    )
    k = int(re.search(r"at alpha/(\d+)", apart_line).group(1))
    arms, seeds = len(a.fits["val CE"].means), v.seeds  # the plan's test's power at that error
    ratio = max(v.var / v.sigma2 - 1, 0.0)  # the baseline's variance over the others'
    want = inference.detectable(
        math.sqrt(v.sigma2),
        seeds,
        arms,
        k,
        a.plan.alpha,
        variance="baseline_apart",
        baseline_ratio=ratio,
    )
    assert apart == pytest.approx(want, abs=6e-5)
    # the comparisons carry that error: se and df in report.json
    compared = json.load(open(tmp_path / "r" / "report.json"))["comparisons"]
    row = next(c for c in compared if c["metric"] == "val CE" and c["primary"] and not c["final"])
    assert row["se"] == pytest.approx(math.sqrt(v.var / v.seeds)) and row["df"] == pytest.approx(
        v.test_df
    )
    t = student_t(row["df"])  # the stated p-value and interval, given back from se and df
    assert row["p"] == pytest.approx(2 * t.sf(abs(row["estimate"]) / row["se"]), rel=1e-9)
    assert row["high"] == pytest.approx(row["estimate"] + t.ppf(0.975) * row["se"], rel=1e-9)


@pytest.mark.slow
def test_an_answer_with_only_worse_arms_counts_the_others_right(tmp_path):
    """One arm of the contrast clearly worse, and the answer says so; the other arms compared
    are counted in words (none: no sentence about them)."""
    from prefix_titan.sweep.analysis import analyse, load_plan
    from prefix_titan.sweep.runs import find_runs, group_arms

    for seed in (1, 2, 3):
        make_run(tmp_path, "label_smoothing", {"name": "label_smoothing"}, 0.0, seed=seed)
        make_run(tmp_path, "prefix_tau0.5", {"name": "prefix", "tau": 0.5}, -0.25, seed=seed)
    answer = analyse(group_arms(find_runs(str(tmp_path))), load_plan()).answer
    assert answer.startswith(
        "No arm was shown to be better than label_smoothing on char composite; worse: "
    )
    assert answer.endswith("at familywise alpha 0.05.") and "The other" not in answer
    for seed in (1, 2, 3):
        make_run(tmp_path, "prefix_tau1.0", {"name": "prefix", "tau": 1.0}, 0.0, seed=seed)
    answer = analyse(group_arms(find_runs(str(tmp_path))), load_plan()).answer
    assert "; worse: prefix_tau0.5 (" in answer
    assert "The other 1 arm compared: no difference found (this sweep detects " in answer


def test_a_plan_whose_contrast_is_absent_answers_so(tmp_path):
    from prefix_titan.sweep.analysis import analyse, load_plan
    from prefix_titan.sweep.runs import find_runs, group_arms

    for seed in (1, 2):
        make_run(tmp_path, "label_smoothing", {"name": "label_smoothing"}, 0.0, seed=seed)
        make_run(tmp_path, "prefix_tau0.5", {"name": "prefix", "tau": 0.5}, 0.0, seed=seed)
    plan = _axis_plan(tmp_path, "tau", contrast=("prefix_norm",))
    answer = analyse(group_arms(find_runs(str(tmp_path))), load_plan(plan)).answer
    assert answer == (
        "No claim: the sweep has no arm of the plan's contrast (prefix_norm; a kind is an arm's "
        "name without its tau part), so nothing was compared (see the notes)."
    )


def test_a_typo_in_the_axis_key_is_named_beside_the_missing_kind(tmp_path, axis_family):
    from prefix_titan.sweep.analysis import load_plan, plan_arm_problems

    objectives = {
        "label_smoothing": {"name": "label_smoothing"},
        f"{axis_family}_modeb": {"name": axis_family, "options": "mode=b"},
    }
    (problem,) = plan_arm_problems(load_plan(_axis_plan(tmp_path, "options.q")), objectives)
    assert problem.startswith(f"the plan's contrast names '{axis_family}', the kind of no arm")
    assert problem.endswith(
        f"; the plan's axis options.q: {axis_family} declares no setting q (its settings: "
        "p=1.0, mode=a)"
    )


@pytest.mark.slow
def test_a_simulated_sweep_holds_the_projects_own_arms(tmp_path, axis_family, capsys):
    """simulate reads the project's sweep_arms.toml (--root) as launch and power do: its arms of
    one's own, each with the --gold-mass of its target, are simulated, planted with an --effect
    named by their import path, and the plan's axis along their setting is fitted; a plan that
    names no arm, a mass missing or for no arm, are refused as a launch would refuse them."""
    from prefix_titan.simulate import main
    from prefix_titan.sweep.analysis import analyse, load_plan
    from prefix_titan.sweep.runs import find_runs, group_arms

    project = tmp_path / "project"
    project.mkdir()
    (project / "sweep_arms.toml").write_text(
        f'[[arm]]\nname = "{axis_family}"\n'
        f'[[arm]]\nname = "{axis_family}"\noptions = "p=0.5"\n'
        f'[[arm]]\nname = "{axis_family}"\noptions = "p=2.0"\n'
    )
    own = [axis_family, f"{axis_family}_p0.5", f"{axis_family}_p2.0"]
    plan, out = _axis_plan(tmp_path, "options.p"), tmp_path / "sim"
    args = ["--out", str(out), "--root", str(project), "--plan", plan, "--items", "20"]
    args += ["--seeds", "1", "2"]
    masses = [x for arm in own for x in ("--gold-mass", f"{arm}=0.8")]
    for extra, says in (
        ([], f"the simulator knows no target gold mass for {', '.join(own)}: give --gold-mass"),
        ([*masses, "--gold-mass", "nope=0.5"], "--gold-mass nope: no such arm; the arms: ce,"),
        (["--gold-mass", f"{own[0]}=1.5"], "give ARM=MASS, MASS in (0, 1]"),
        ([*masses, "--implied-ce", f"{own[0]}=-1"], "give ARM=NATS, NATS >= 0"),
        ([*masses, "--implied-ce", "nope=0.2"], "--implied-ce nope: no such arm; the arms: ce,"),
        (
            [*masses, "--plan", _axis_plan(tmp_path, "tau", contrast=("nope",))],
            "the plan's contrast names 'nope', the kind of no arm of the project (a kind",
        ),
    ):
        with pytest.raises(SystemExit):
            main([*args, *extra])
        assert says in capsys.readouterr().err, extra
    assert not out.exists()
    assert "or leave it out of the simulated sweep with --arms" in " ".join(
        main_error(main, [*args], capsys).split()
    )
    several = ["--gold-mass", *(f"{arm}=0.8" for arm in own)]  # (one flag, several arms)
    main([*args, *several, "--effect", f"{own[2]}:char=0.3"])
    # a mass or implied CE of an arm --arms leaves out: not used, and said so (both alike)
    picked = [
        "--arms",
        "label_smoothing",
        own[0],
        "--implied-ce",
        f"{own[1]}=0.3",
        "--out",
        str(tmp_path / "b"),
    ]
    main([*args[2:], *several, *picked])
    err = capsys.readouterr().err
    for flag in ("--gold-mass", "--implied-ce"):
        assert f"note: {flag} {own[1]}" in err and "not among the simulated --arms" in err, err
    a = analyse(group_arms(find_runs(str(out))), load_plan(str(out / "analysis_plan.toml")))
    assert {arm: a.along[arm] for arm in own} == {own[0]: 1.0, own[1]: 0.5, own[2]: 2.0}
    assert len(a.arms) == 17 and {t["kind"] for t in a.trends} == {axis_family}
    composite = {c.arm: c.estimate for c in a.comparisons if c.metric == "char composite"}
    assert composite[own[2]] > 0.15 and abs(composite[own[1]]) < 0.1  # the planted effect
    # calibrated under the plan: the default effect is planted on an arm the plan compares
    calibrate = ["--calibrate", "2", "--workers", "1", "--root", str(project), "--plan", plan]
    main([*calibrate, "--items", "20", "--seeds", "1", "2", *masses])
    said = capsys.readouterr().out
    assert "2 sweeps of 17 arms x 2 seeds, the plan's variance = 'baseline_apart':" in said
    assert (
        f"Planted +0.05 on char of {axis_family}, 2 sweeps: claimed better on char composite"
        in (said)
    )


def test_a_sweep_not_yet_evaluated_is_told_how_to_evaluate(tmp_path):
    from prefix_titan.sweep.analysis import analyse, load_plan
    from prefix_titan.sweep.runs import find_runs, group_arms

    for seed in (1, 2):
        for name, objective in (("label_smoothing", {}), ("prefix_tau0.5", {"tau": 0.5})):
            kind = {"name": name.split("_tau")[0], **objective}
            make_run(tmp_path, name, kind, 0.0, seed=seed, eval_kind=None)
    notes = analyse(group_arms(find_runs(str(tmp_path))), load_plan()).notes
    assert (
        "character knowledge: char composite is not available for every run of label_smoothing "
        "and another arm (an evaluated metric: `python -m prefix_titan.eval --all-checkpoints "
        "RUN_DIR --tasks pilot` evaluates a run's checkpoints; offline, `--tasks char_probes`, the "
        "probes and their blank twins): nothing compared"
    ) in notes
    assert not any(n.startswith("validation CE:") and "evaluated metric" in n for n in notes)
    # the downstream primary's offline way is --data-dir (the probes make no bits per byte)
    (said,) = [n for n in notes if n.startswith("downstream: downstream bits/byte is not avail")]
    assert "offline, `--data-dir DIR` with the tasks' files" in said and "char_probes" not in said
    # a CUTE primary: the group that evaluates it (pilot does not hold CUTE)
    from prefix_titan.sweep.analysis import PLAN

    cute = tmp_path / "cute.toml"
    cute.write_text(
        open(PLAN).read().replace('primary = "char composite"', 'primary = "cute_spell"')
    )
    notes = analyse(group_arms(find_runs(str(tmp_path))), load_plan(str(cute))).notes
    (said,) = [n for n in notes if n.startswith("character knowledge: cute_spell is not avail")]
    assert "--all-checkpoints RUN_DIR --tasks cute` evaluates" in said


def test_the_kinds_side_by_side_stay_at_their_own_values_however_close_they_lie():
    """Along position_gamma the values 0.99, 0.999 and 1 lie within 1% of each other: each kind's
    point is drawn nearer its own value than any other (a fixed factor 1.04 a kind apart would
    put the kinds at other values than theirs); along tau the kinds stay a factor 1.04 apart."""
    for values in ([0.99, 0.999, 1.0], [0.9, 0.99, 0.999]):
        for kinds in (2, 3):
            nudged = report_module.side_by_side(values, kinds, log=True)
            for v in values:
                for i in range(kinds):
                    x = nudged(v, i)
                    assert min(values, key=lambda u: abs(math.log(x / u))) == v
    taus = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0]
    nudged = report_module.side_by_side(taus, 2, log=True)
    assert nudged(0.5, 1) / nudged(0.5, 0) == pytest.approx(1.04)
    nudged = report_module.side_by_side([0.99, 0.999, 1.0], 2, log=False)
    assert nudged(0.999, 1) - nudged(0.999, 0) == pytest.approx(0.015 * 0.01)


def test_the_per_arm_table_of_no_metric_is_a_sentence():
    """A sweep whose runs have no metric in common (runs cut short before their first
    validation, none evaluated) rendered a header of two columns over a separator of one."""
    from prefix_titan.sweep.report import summary_table

    assert summary_table(None, []) == "No metric was measured for any arm (see the notes)."


def main_error(main, args, capsys) -> str:
    """The error a command's main(args) exits with (stderr)."""
    with pytest.raises(SystemExit):
        main(args)
    return capsys.readouterr().err


def test_runs_of_ones_own_families_follow_the_built_in_ones_together():
    """A family named by import path may not read tau: its arms were placed among the prefix
    arms at its unread default (0.5). They follow the built-in arms, each family together."""
    from prefix_titan.sweep.runs import run_order

    def run(name, family, tau=0.5):
        objective = {"name": family, "normalize": False, "support": "vocab", "tau": tau}
        return {"name": name, "objective": objective, "seed": 1}

    runs = [
        run("my.lab:firstk_k3", "my.lab:firstk"),
        run("prefix_tau1.0", "prefix", 1.0),
        run("my.lab:suffix", "my.lab:suffix"),
        run("ce", "ce"),
        run("prefix_tau0.2", "prefix", 0.2),
        run("my.lab:firstk_k2", "my.lab:firstk"),
        run("label_smoothing", "label_smoothing"),
    ]
    assert [r["name"] for r in sorted(runs, key=run_order)] == [
        "ce",
        "label_smoothing",
        "prefix_tau0.2",
        "prefix_tau1.0",
        "my.lab:firstk_k2",
        "my.lab:firstk_k3",
        "my.lab:suffix",
    ]


def test_several_effects_follow_one_flag_as_several_gold_masses_do(tmp_path, monkeypatch, capsys):
    """`simulate --effect A B` plants both (it took one per flag, and the second was an
    unrecognized argument), as `--gold-mass A B` takes both; `power --effect` alike."""
    from prefix_titan import power
    from prefix_titan import simulate as simulate_cli

    planted = []
    monkeypatch.setattr(
        simulate_cli, "write_sweep", lambda sweep, *rest: planted.append(sweep.effects)
    )
    monkeypatch.setattr(simulate_cli.sim, "simulate", lambda sweep, seed: sweep)
    one, two = "prefix_tau0.5:val CE=0.05", "label_smoothing:char=0.02"
    argv = ["--out", str(tmp_path / "sim"), "--arms", "ce", "label_smoothing", "prefix_tau0.5"]
    simulate_cli.main([*argv, "--effect", one, two])
    simulate_cli.main([*argv, "--effect", one, "--effect", two])
    expected = (("prefix_tau0.5", "val CE", 0.05), ("label_smoothing", "char", 0.02))
    assert planted == [expected, expected]
    power.main(
        ["--scale", "smoke", "--seeds", "3", "--effect", "val CE=0.5", "char composite=0.03"]
    )
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| char composite |")]
    assert rows and rows[0].split(" | ")[4] == "0.03"  # the second effect, read


def test_tasks_evaluated_but_not_analysed_are_named_and_cute_can_be_planned(tmp_path):
    """CUTE's results (and a task the report has no metric for) were left out of the report
    without a word, and no plan could name CUTE: a note names what is not analysed, and a plan
    naming a CUTE task compares it (its exact match, per arm)."""
    for seed in (1, 2, 3):
        for name, objective, gain in (
            ("label_smoothing", {"name": "label_smoothing"}, 0.0),
            ("prefix_tau0.5", {"name": "prefix"}, 0.1),
        ):
            folder = make_run(tmp_path, name, objective, 0.0, seed=seed)
            path = folder / "hf" / "step-2000" / "eval_results.json"
            data = json.loads(path.read_text())
            data["results"]["cute_spell"] = {"exact_match,none": 0.2 + gain + 0.01 * seed}
            data["results"]["cute_orth"] = {"exact_match,none": 0.1}
            data["results"]["my_task"] = {"acc,none": 0.5}
            path.write_text(json.dumps(data))
    text = report(str(tmp_path))
    note = "evaluated but not analysed: cute_orth, cute_spell: the plan names them nowhere (they"
    assert note in text and text.count("my_task") == 1, text  # said once, with its reason
    assert "(they are metrics a plan's family may name as exploratory" in text
    assert "; my_task: no metric of the report reads it" in text
    plan = (ROOT / "prefix_titan" / "sweep" / "analysis_plan.toml").read_text()
    plan = plan.replace('"emb letters, in",', '"cute_spell", "emb letters, in",', 1)
    (tmp_path / "plan.toml").write_text(plan)
    text = report(str(tmp_path), plan=str(tmp_path / "plan.toml"))  # (an exploratory one)
    assert (
        "evaluated but not analysed: cute_orth: the plan names it nowhere (it is a metric" in text
    )
    assert "; my_task: no metric of the report reads it" in text
    written = tmp_path / "report_exploratory" / "report.json"
    cute = json.loads(written.read_text())["per_arm"]["cute_spell"]
    assert cute["label_smoothing"]["mean"] == pytest.approx(0.22)
    assert cute["prefix_tau0.5"]["mean"] == pytest.approx(0.32)


@pytest.mark.slow  # (figures drawn)
def test_the_evaluated_primaries_learning_curves_are_drawn(tmp_path):
    """`eval --all-checkpoints` evaluates every checkpoint: the report draws each family's
    evaluated primary against the step, one line per arm (the mean over its seeds), whose last
    point is the final step's mean in report.json; a sweep evaluated at one step has none, said."""
    from prefix_titan.evaluation.harness import DEFAULT_TASKS
    from prefix_titan.evaluation.probes import BLANK_TASKS, PROBE_TASKS
    from prefix_titan.sweep import simulate as sim
    from prefix_titan.sweep.configs import arm_specs

    arms = tuple(
        s for s in arm_specs() if s.arm_name() in ("ce", "label_smoothing", "prefix_tau0.5")
    )
    tasks = (*DEFAULT_TASKS, *PROBE_TASKS, *BLANK_TASKS)
    runs = sim.simulate(sim.Sweep(arms=arms, items=20, seeds=(1, 2), tasks=tasks), seed=0)
    sim.write(runs, str(tmp_path / "sweep"))
    text = report_module.report(str(tmp_path / "sweep"))
    assert "![eval_curves.png](eval_curves.png)" in text
    assert (tmp_path / "sweep" / "report" / "eval_curves.png").stat().st_size > 5000
    from prefix_titan.sweep.report import _eval_curves
    from prefix_titan.sweep.runs import find_runs, group_arms, load_run

    loaded = group_arms([load_run(r["folder"]) for r in find_runs(str(tmp_path / "sweep"))])
    data = json.loads((tmp_path / "sweep" / "report" / "report.json").read_text())
    from prefix_titan.sweep.analysis import analyse, load_plan

    (name, lines), *_ = _eval_curves(analyse(loaded, load_plan()), loaded)
    assert name == "char composite" and len(lines) == 3
    for arm, points in lines:
        assert [s for s, _ in points] == [1200, 2400, 3600]
        assert math.isclose(points[-1][1], data["per_arm_final"][name][arm]["mean"], rel_tol=1e-12)


def test_a_registered_plan_removed_or_replaced_after_the_launch_is_seen(
    sweep, tmp_path_factory, monkeypatch
):
    """Each start of a launched run records the plan the launch registered (its sha256, from
    LAUNCH_PLAN_ENV): where the plan file is then removed, the report does not apply the
    package's plan as the registered one but says the analysis is exploratory; a plan with the
    launched settings is registered again (and the report is pre-registered again); a registered
    file replaced by another plan, its header and digest its own, is seen too."""
    from prefix_titan.runs.folder import LAUNCH_PLAN_ENV, RUN_CONFIG, STARTS
    from prefix_titan.sweep.analysis import PLAN, load_plan, plan_digest, register_plan
    from prefix_titan.titan.metrics import start_record

    plans = tmp_path_factory.mktemp("plans")
    plan = plans / "plan.toml"
    plan.write_text(open(PLAN).read().replace("alpha = 0.05", "alpha = 0.1"))
    digest = plan_digest(load_plan(str(plan)))
    checkpoint = type("C", (), {"load_step": -1})()
    monkeypatch.setenv(LAUNCH_PLAN_ENV, digest)
    (start,) = start_record(str(tmp_path_factory.mktemp("fresh")), checkpoint, [])
    assert start["plan_sha256"] == digest
    for record in sweep.glob(f"*/*/{RUN_CONFIG}"):  # the runs as that launch started them
        data = json.loads(record.read_text())
        data[STARTS] = [{"at": "t", "plan_sha256": digest}]
        record.write_text(json.dumps(data))
    text = report(str(sweep))  # the registered plan removed
    assert text.startswith("# Sweep report") and "(An exploratory re-analysis" in text
    assert f"that is no longer in {sweep} (analysis_plan.toml removed)" in text
    assert register_plan(str(sweep), None) is None  # other settings: not registered now
    path = register_plan(str(sweep), str(plan), " on a test day")
    assert "again, with the settings the sweep's runs were launched under" in open(path).read()
    assert "(An exploratory re-analysis" not in report(str(sweep))
    other = plans / "other.toml"
    other.write_text(open(PLAN).read().replace("alpha = 0.05", "alpha = 0.2"))
    elsewhere = register_plan(str(tmp_path_factory.mktemp("new") / "sweep"), str(other))
    os.chmod(path, 0o644)
    shutil.copyfile(elsewhere, path)  # a registered file of its own, put in its place
    replaced = report(str(sweep), out=str(plans / "report"))
    assert "(An exploratory re-analysis" in replaced
    assert (
        "has other settings (sha256 " in replaced and "it was replaced after the runs" in replaced
    )
    (record, *_) = sweep.glob(f"*/*/{RUN_CONFIG}")  # a later start under the replacement
    data = json.loads(record.read_text())
    data[STARTS].append({"at": "t2", "plan_sha256": plan_digest(load_plan(elsewhere))})
    record.write_text(json.dumps(data))
    again = report(str(sweep), out=str(plans / "report2"))
    assert "it was replaced after the runs" in again


def test_a_plan_that_differs_in_its_families_says_which_and_how(tmp_path):
    """A re-analysis plan that only reorders one family's exploratory metrics is a deviation
    (the graph's shares follow the order), named with its family and setting, not "families"
    alone."""
    from prefix_titan.sweep.analysis import PLAN, load_plan, plan_differences

    text = open(PLAN).read()
    assert '"val ECE", "val top1"' not in text and '"val top1", "val ECE"' in text
    moved = tmp_path / "moved.toml"
    moved.write_text(text.replace('"val top1", "val ECE"', '"val ECE", "val top1"'))
    family = next(f.name for f in load_plan(str(moved)).families if "val ECE" in f.exploratory)
    assert plan_differences(load_plan(), load_plan(str(moved))) == [
        f"families ({family}: exploratory, its order)"
    ]
    other = tmp_path / "other.toml"
    other.write_text(text.replace('primary = "val CE"', 'primary = "val CE excess"', 1))
    (said,) = plan_differences(load_plan(), load_plan(str(other)))
    assert said.startswith("families (") and ": primary" in said
    # a family renamed, the families reordered: each said, with the plan a family is only in
    import dataclasses

    plan = load_plan()
    first, *rest = plan.families
    swapped = dataclasses.replace(plan, families=(*rest, first))
    assert plan_differences(plan, swapped) == ["families (the order of the families)"]
    renamed = dataclasses.replace(plan, families=(dataclasses.replace(first, name="x"), *rest))
    assert plan_differences(plan, renamed, ("the registered plan", "this plan")) == [
        f"families ({first.name}: only in the registered plan; x: only in this plan)"
    ]
