"""The sweep's decisions: the pre-registered plan (analysis_plan.toml) applied to the runs.

For each family of the plan, its primary metric is compared, arm by arm, for every arm of the
contrast (the prefix families) against the baseline (label smoothing): estimates, intervals and
p-values from the two-way arm x seed model (inference.py), the error by the plan's variance rule
(the package's: the baseline's residual variance apart from the others' pooled one), and one
graphical multiple-testing procedure per family (Bretz et al. 2009) over its
primary and exploratory comparisons together: alpha starts split equally over the primary
comparisons (Holm's procedure among them), a claimed primary passes half of its share to its
arm's exploratory metrics and half to the other primaries, so an exploratory metric is claimed
only for an arm claimed on the primary, and the familywise rate of false claims of the whole
family is at most alpha whatever is true, given p-values that hold their level (the former gate,
Holm over the exploratory comparisons beside Holm over the primaries, reached 8% when most arms
truly differed). The variance rule's p-values assume the compared arm as noisy as the others,
unless its residual variance is above theirs at the 99% level (inference.noisier: then its
per-seed differences): one arm with 2x (3x) their sd and no effect, among arms that truly
differ, is claimed in 7.5% (7.1%) of 5-seed sweeps (docs/evaluation.md, "A compared arm
noisier than the rest"). A claim where the adjusted p is at most alpha.
Everything else is reported, not claimed: every comparison's raw and adjusted p, the trend along
the plan's axis (tau unless it names another) of each kind of the contrast, the CE-equivalent
arms against ce (A/A checks), what the targets imply for plain CE. With one seed nothing is tested and nothing claimed.

Each run's metrics are averaged over its last `checkpoints` evaluated steps (the final step is
shown too); runs evaluated at other steps, with another --limit or another task version, or
validated at other steps, are refused, naming them. A value that is not finite (a run that
diverged) leaves its arm out of that metric's comparisons, named in the notes and the answer.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from ..evaluation.harness import EMBEDDING_PROBE
from ..evaluation.probes import PROBE_TASKS
from ..runs.folder import (
    METRICS_LOG,
    RUN_CONFIG,
    STARTS,
    TARGET_TABLE,
    read_toml,
    write_atomically,
)
from . import inference
from .metrics import (
    CHAR_PROBES,
    EFFECTS,
    METRICS,
    OWN_TABLE,
    POSITION_METRICS,
    beyond_widest,
    detectable_text,
    evaluated_steps,
    is_control,
    known_metrics,
    metric,
    run_value,
    validation_steps,
)
from .runs import seed_order, unpaired, unplaced

PLAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "analysis_plan.toml")
CE_EQUIVALENT = 0.99
"""An arm whose target keeps at least this mass on the gold token (on average over the validation
tokens) is in effect plain CE: compared with ce as an A/A check"""
EXPLORATORY_SHARE = 0.5
"""The part of a claimed primary's share of alpha that passes to its arm's exploratory metrics
(the rest passes to the other arms' primaries)"""
GRAPH_EPSILON = 1e-6
"""The share a claimed exploratory comparison passes straight to the other arms' primaries (the
rest goes to its arm's other exploratory metrics): Bretz et al.'s epsilon edge, without which the
last of an arm's exploratory metrics would hold its share with nowhere to pass it"""
SIMULATED = "synthetic sweep (prefix_titan.simulate)"
"""The job description of a simulated sweep's runs (sweep.simulate): a metric none of them holds
is one the simulator does not simulate"""
BY_CONSTRUCTION = ("val CE",)
"""The metrics whose arm - baseline has a part the targets imply (`implied CE`, the plain CE a
perfect target-matcher has, in the same nats per token): shown beside it (by_construction)"""
AA_METRIC = {"val CE": "val CE excess"}
"""The metric an A/A check compares in place of a family's primary: validation CE less the part
the target costs by construction"""
SUMMARY = (
    "char acc",
    "char acc, calibrated",
    "char acc - blank",
    "char composite, read",
    "prefix-shaped acc",
    "downstream acc",
    "emb letters, in",
)
"""Shown per arm in every report beside the plan's primaries (descriptive, never tested)"""


@dataclass(frozen=True)
class Family:
    name: str
    primary: str
    exploratory: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    question: str
    alpha: float
    baseline: str
    checkpoints: int
    contrast: tuple[str, ...]
    families: tuple[Family, ...]
    source: str = PLAN
    axis: str = "tau"
    """The objective setting the contrast's arms vary along (`tau`, `epsilon`, `position_gamma`,
    or `options.KEY`, a number of a family's own): an arm's kind is its name without that part,
    and the report fits a trend along it for each kind of the contrast"""
    axis_scale: str = "log"
    """The axis' scale for the trend and the figure: `log` (every value > 0), `linear`, or
    `log_one_minus`, ln(1 - value), for a setting below 1 whose values approach it
    (position_gamma 0.9, 0.99, 0.999: evenly spaced there, where ln gamma puts 0.9 apart)"""
    variance: str = "pooled"
    """The error of arm - baseline: `pooled` (one residual variance over every arm: the most power,
    and a false-claim rate above alpha when the baseline is noisier than the others) or
    `baseline_apart` (the baseline's own variance beside the others' pooled one,
    inference.apart: the family's false claims at most alpha in simulation with the baseline's
    sd 1-2x the others' in a sweep of 14 arms, under the null and where most arms truly differ
    (under the null alone up to 4x); not beyond, nor with 3 arms or a compared arm noisier than
    the rest; at 3 seeds a primary's detectable effect about twice the pooled rule's)"""


AXIS_SCALES = ("log", "linear", "log_one_minus")
VARIANCES = ("pooled", "baseline_apart")
PLAN_DEFAULTS = {"axis": "tau", "axis_scale": "log", "variance": "pooled"}
"""The plan's optional settings and their defaults (a plan at them has the digest it had before
they existed)"""


CHARACTER_METRICS = ("char", "emb ", "prefix-shaped")
"""The metrics read from the character and embedding probes (by their names' start), which an
evaluation makes offline; the downstream tasks' need the hub or --data-dir"""


def _how_measured(name: str, held: bool = False) -> str:
    """How the runs come to hold metric `name`, in brackets (the command that evaluates it, the
    offline way; or the validation a run must do), for a note on a primary the runs lack;
    `held`: some runs hold it (a note on it names those that do not)."""
    source = metric(name).source if name in METRICS else None
    if source == "eval":
        group = "cute" if name.startswith("cute_") else "pilot"
        offline = (
            "`--tasks embedding_probe`"
            if name.startswith("emb ")
            else "`--tasks char_probes`, the probes and their blank twins"
            if name.startswith(CHARACTER_METRICS)
            else "`--data-dir DIR` with the tasks' files, docs/evaluation.md"
        )
        return (
            " (an evaluated metric: `python -m prefix_titan.eval --all-checkpoints RUN_DIR "
            f"--tasks {group}` evaluates a run's checkpoints; offline, {offline})"
        )
    if source == "validation":
        if held:
            return (
                " (a validation metric: the note on it names the runs whose metrics logs hold no "
                "validation row after step 1, why, and how they get one)"
            )
        return (
            " (a validation metric: the runs' metrics logs hold no validation row after step 1: "
            "the logs cut short, older copies put back or the logs missing, or the runs trained "
            "with validation.enable = false, or before the last step was always validated, where "
            f"a run shorter than validation.freq validated only its first step; "
            f"{validate_again(False)}; runs trained with validation off are trained again with it "
            "on)"
        )
    return ""


def validate_again(one: bool) -> str:
    """How a run (`one`) or runs get the validation rows their metrics logs lack (a note's fix)."""
    return (
        f"run {'its' if one else 'their'} training command again (or the same `sweep launch`): a "
        "stopped run resumes, and one whose final checkpoint is saved loads it, trains nothing and "
        "validates its final step where its log holds no row of it (docs/experiment.md); restore "
        f"{'the log' if one else 'a log'} from a copy to get the earlier rows back"
    )


def log_gap(run: dict) -> str:
    """Why a run's metrics log gives no validation metric after step 1, in words: the log
    missing, or holding no such row (and why, where the run says: a torn last line not read, the
    log ending before a step the run recorded, validation off)."""
    if run.get("log") == "missing":
        return f"its metrics log ({METRICS_LOG}) is missing"
    why = []
    if run.get("log") == "torn":
        why.append("it ends in a torn line, not read: an append cut short")
    ends, last = run.get("log_last"), run.get("last_step")
    if "log_last" in run and last is not None and (ends is None or ends < last):
        why.append(
            f"it {'holds no row' if ends is None else f'ends at step {ends}'}, though the run "
            f"recorded step {last} in a checkpoint or evaluation: cut short, or an older copy put "
            "back"
        )
    if validation_off(run):
        why.append("trained with validation.enable = false")
    return f"its metrics log ({METRICS_LOG}) has no validation row after step 1" + (
        f" ({'; '.join(why)})" if why else ""
    )


def validation_off(run: dict) -> bool:
    """Whether the run's record says it trained with validation.enable = false."""
    return ((run.get("config") or {}).get("validation") or {}).get("enable") is False


def torn_logs(runs_by_arm: dict[str, dict]) -> str | None:
    """A note naming the runs whose metrics log ends in a torn line (an append cut short: read_log
    reads the rows before it), else None."""
    torn = [
        f"{arm} seed {seed} ({run['folder']})"
        for arm, by_seed in runs_by_arm.items()
        for seed, run in by_seed.items()
        if run.get("log") == "torn"
    ]
    if not torn:
        return None
    one = len(torn) == 1
    return (
        f"the metrics log ({METRICS_LOG}) of {', '.join(torn)} ends in a torn line (an append cut "
        f"short: a crash, or a run writing it now), not read: {'its' if one else 'their'} "
        f"numbers are those of the rows before it; a run started again cuts that line off, and "
        "one whose final checkpoint is saved validates its final step where the row is missing"
    )


def unstated_variance(path: str) -> str | None:
    """Where the plan file at `path` leaves `variance` unset, why a launch registering it asks
    for it (such a plan reads as "pooled", PLAN_DEFAULTS, for plans written before the setting
    existed; a new one states its rule), else None."""
    if "variance" in read_toml(path, "the analysis plan (--plan)"):
        return None
    return (
        'it sets no `variance` (it would read as "pooled": one residual variance over every arm, '
        "which claims falsely in 7-15% of null sweeps where the baseline's sd is 1.5-2x the "
        'others\'; the package plan\'s is "baseline_apart", docs/evaluation.md, "Equal '
        'variances"): set variance = "baseline_apart" or "pooled"'
    )


def axis_settings() -> list[str]:
    """The objective settings a plan's axis may name (besides `options.KEY`): the numbers of
    the objective."""
    from ..objectives import ObjectiveSpec
    from ..objectives.spec import TARGET, WEIGHTING

    return [
        f.name
        for f in ObjectiveSpec.fields_of(TARGET, WEIGHTING)
        if str(f.type).split(" ")[0] in ("float", "int")
    ]


def _check_axis(path: str, axis, scale) -> None:
    allowed = f"{', '.join(axis_settings())} or options.KEY (a setting of a family of one's own)"
    if not isinstance(axis, str) or not (
        axis in axis_settings() or re.fullmatch(r"options\.[A-Za-z_][A-Za-z0-9_]*", axis)
    ):
        raise ValueError(f"{path}: axis must be {allowed}; got {axis!r}")
    if scale not in AXIS_SCALES:
        raise ValueError(
            f"{path}: axis_scale must be {', '.join(AXIS_SCALES[:-1])} or {AXIS_SCALES[-1]}; "
            f"got {scale!r}"
        )


def axis_x(value: float, scale: str) -> float:
    """Where `value` lies on the plan's axis scale (the trend's x): ln value, value, or
    ln(1 - value)."""
    if scale == "log":
        return math.log(value)
    return math.log(1.0 - value) if scale == "log_one_minus" else value


def axis_unit(axis: str, scale: str) -> str:
    """The trend's x in words: "ln tau", "tau" or "ln(1 - position_gamma)"."""
    if scale == "log":
        return f"ln {axis}"
    return f"ln(1 - {axis})" if scale == "log_one_minus" else axis


def load_plan(path: str | None = None) -> Plan:
    """The analysis plan (the package's by default), every name checked."""
    path = path or PLAN
    try:
        data = read_toml(path, "the analysis plan (--plan)")
    except FileNotFoundError:
        raise ValueError(f"--plan {path}: no such file") from None
    _check_plan_form(path, data)
    for i, f in enumerate(data.get("family") or [], 1):  # (which family, not only which key)
        if missing := [k for k in ("name", "primary") if k not in f]:
            raise ValueError(
                f"{path}: [[family]] {i} ({f.get('name', 'without a name')}) lacks the setting "
                f"{missing[0]!r} (a family names its `name`, its `primary` metric and optionally "
                "its `exploratory` ones)"
            )
    try:
        families = tuple(
            Family(f["name"], f["primary"], tuple(f.get("exploratory", ()))) for f in data["family"]
        )
        plan = Plan(
            data["question"],
            float(data["alpha"]),
            data["baseline"],
            int(data["checkpoints"]),
            tuple(data["contrast"]),
            families,
            path,
            data.get("axis", PLAN_DEFAULTS["axis"]),
            data.get("axis_scale", PLAN_DEFAULTS["axis_scale"]),
            data.get("variance", PLAN_DEFAULTS["variance"]),
        )
    except KeyError as e:
        raise ValueError(f"{path}: the plan lacks the setting {e.args[0]!r}") from None
    _check_axis(path, plan.axis, plan.axis_scale)
    if plan.variance not in VARIANCES:
        raise ValueError(
            f"{path}: variance must be {' or '.join(VARIANCES)}; got {plan.variance!r}"
        )
    if not 0 < plan.alpha < 1:
        raise ValueError(f"{path}: alpha must be in (0, 1); got {plan.alpha}")
    if plan.checkpoints < 1:
        raise ValueError(f"{path}: checkpoints must be >= 1; got {plan.checkpoints}")
    if not plan.families:
        raise ValueError(f"{path}: the plan names no [[family]]")
    names = [f.name for f in plan.families]
    for f in plan.families:
        if names.count(f.name) > 1:
            raise ValueError(f"{path}: two families are named {f.name!r}; give each its own name")
        listed = [f.primary, *f.exploratory]
        twice = sorted({m for m in listed if listed.count(m) > 1})
        if twice:
            raise ValueError(
                f"{path}: family {f.name!r} lists {', '.join(map(repr, twice))} more than once "
                "(primary and exploratory together): each metric once, as its share of alpha "
                "depends on the count"
            )
        for name in listed:
            if name not in METRICS:
                raise ValueError(
                    f"{path}: family {f.name!r} names the metric {name!r}, which does not "
                    f"exist{known_metrics(name)}"
                )
            if is_control(name) and not _registered_copy(path):  # (registered: as it was)
                probe = name.removesuffix("_blank").removesuffix(", blank")
                less = next(
                    (m for m in (f"{probe}, calibrated", f"{probe} - blank") if m in METRICS), None
                )
                raise ValueError(
                    f"{path}: family {f.name!r} names {name!r}, a control (the probe with its word "
                    "blanked: what the model prefers without reading it, read beside the probe), "
                    f"not a measure a claim can be made on; name {probe!r}"
                    + (f" or {less!r} (the probe less what its control finds)" if less else "")
                )
        if f.primary in OWN_TABLE and plan.baseline in GOLD_ONLY and not _registered_copy(path):
            raise ValueError(
                f"{path}: family {f.name!r} names {f.primary!r} its primary against the baseline "
                f"{plan.baseline!r}: each run measures it on its own target table, and "
                f"{plan.baseline}'s has no entries but the gold (its value is 0 by "
                "construction), so no arm trained towards another table could be compared with "
                "it (the report compares it only between arms trained towards the same table). "
                "Name it as exploratory (shown per arm, not tested), or make the baseline an arm "
                "trained towards the same table as the contrast's (a family's arm, against arms "
                "of it that differ in their token weighting alone)"
            )
    return plan


GOLD_ONLY = ("ce", "label_smoothing")
"""The baselines whose target tables hold no sparse entry but the gold (label smoothing's
uniform part is no table entry): a metric of OWN_TABLE is 0 on them by construction"""


def _registered_copy(path: str) -> bool:
    """Whether the plan file at `path` is a sweep's registered copy (register_plan's header on
    its first line): read as it was registered, though a rule added since would refuse it."""
    with open(path, encoding="utf-8") as f:
        return f.readline().startswith(REGISTERED_HEADER)


PLAN_KEYS = {
    "question": "a sentence (text)",
    "alpha": "a number in (0, 1)",
    "baseline": "an arm's name (text)",
    "checkpoints": "a whole number >= 1",
    "contrast": 'a non-empty list of arm kinds (contrast = ["prefix", ...])',
    "axis": "text",
    "axis_scale": "text",
    "variance": "text",
    "family": "[[family]] tables",
}
"""A plan's settings and the form each takes"""
FAMILY_KEYS = {
    "name": "text",
    "primary": "a metric's name (text)",
    "exploratory": 'a list of metric names (exploratory = ["piqa", ...])',
}


def _check_plan_form(path: str, data: dict) -> None:
    """Every key of the plan one it has (a misspelt one names the nearest), every value of its
    form: a plan that means something else than it says is refused before it decides."""
    import difflib

    def unknown(keys, known: dict, where: str) -> None:
        for key in keys:
            if key not in known:
                near = difflib.get_close_matches(key, list(known), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ValueError(
                    f"{path}: {where} has no setting {key!r}{hint}; its settings: "
                    f"{', '.join(known)}"
                )

    def text_list(value) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) and v for v in value)

    unknown(data, PLAN_KEYS, "the plan")
    forms = {
        "question": lambda v: isinstance(v, str),
        "alpha": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "baseline": lambda v: isinstance(v, str) and v != "",
        "checkpoints": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "contrast": lambda v: text_list(v) and len(v) > 0,
        "axis": lambda v: isinstance(v, str),
        "axis_scale": lambda v: isinstance(v, str),
        "variance": lambda v: isinstance(v, str),
        "family": lambda v: isinstance(v, list) and all(isinstance(f, dict) for f in v),
    }
    for key, ok in forms.items():
        if key in data and not ok(data[key]):
            raise ValueError(f"{path}: {key} must be {PLAN_KEYS[key]}; got {data[key]!r}")
    for f in data.get("family", []):
        where = f"[[family]] {f.get('name', '(no name)')!r}"
        unknown(f, FAMILY_KEYS, where)
        for key in ("name", "primary"):
            if key in f and not (isinstance(f[key], str) and f[key]):
                raise ValueError(
                    f"{path}: {where}: {key} must be {FAMILY_KEYS[key]}; got {f[key]!r}"
                )
        if "exploratory" in f and not text_list(f["exploratory"]):
            raise ValueError(
                f"{path}: {where}: exploratory must be {FAMILY_KEYS['exploratory']}; got "
                f"{f['exploratory']!r}"
            )


REGISTERED = "analysis_plan.toml"
"""The plan a sweep registered: `sweep launch` writes it into the sweep folder before its runs"""


def registered_plan(runs_dir: str) -> str | None:
    """The plan `runs_dir` (a sweep folder) registered at launch, or None."""
    path = os.path.join(runs_dir, REGISTERED)
    return path if os.path.isfile(path) else None


DIGEST = "# sha256 of the plan's settings: "
REGISTERED_HEADER = "# The analysis plan registered by "
"""The registered plan's second line: the digest of its settings as registered"""


def plan_digest(plan: Plan) -> str:
    """The sha256 of a plan's settings: those set away from their defaults, its file not."""
    settings = {
        k: v
        for k, v in asdict(plan).items()
        if k != "source" and not (k in PLAN_DEFAULTS and v == PLAN_DEFAULTS[k])
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def registered_plan_doubt(path: str) -> str | None:
    """Why the registered plan at `path` cannot be taken for the plan its launch registered, said
    after its path: a setting was edited after (they no longer match the digest on its second
    line; comments may change), or it carries no registration header and digest (a plan put
    there by hand, or registered before digests were written: it cannot be checked). None where
    it is the registered one."""
    with open(path, encoding="utf-8") as f:
        header, digest = f.readline(), f.readline()
    if not header.startswith("#") or not digest.startswith(DIGEST):
        return (
            "carries no registration header and digest on its first two lines (`sweep launch "
            "--plan` writes them): it cannot be shown to be the plan registered before the runs"
        )
    if plan_digest(load_plan(path)) != digest[len(DIGEST) :].strip():
        return (
            "was edited after the sweep registered it (its settings no longer match the digest "
            "on its second line), so it is not the plan registered before the runs"
        )
    return None


def plan_differences(
    a: Plan, b: Plan, names: tuple[str, str] = ("the first", "the other")
) -> list[str]:
    """The settings in which two plans differ (their files aside), `families` with which family
    and which of its settings ("families (character knowledge: exploratory, its order)"); `names`
    the plans', in words ("the registered plan", "this one")."""
    x, y = asdict(a), asdict(b)
    return [
        k if k != "families" else f"families ({_family_differences(x[k], y[k], names)})"
        for k in x
        if k != "source" and x[k] != y[k]
    ]


def _family_differences(x: list[dict], y: list[dict], names: tuple[str, str]) -> str:
    """How two plans' families differ, in words: those one of them lacks (named by `names`),
    each shared family's settings that differ (a list holding the same metrics in another order:
    "its order"), and the order of the families they share (the answer reads the first)."""
    a, b = {f["name"]: f for f in x}, {f["name"]: f for f in y}
    out = [
        f"{n}: only in {names[0] if n in a else names[1]}" for n in [*a, *b] if (n in a) != (n in b)
    ]
    for name in [n for n in a if n in b]:
        keys = [k for k in a[name] if a[name][k] != b[name].get(k)]
        said = [
            f"{k}, its order"
            if isinstance(a[name][k], list | tuple) and sorted(a[name][k]) == sorted(b[name][k])
            else k
            for k in keys
        ]
        if said:
            out.append(f"{name}: {', '.join(said)}")
    if [n for n in a if n in b] != [n for n in b if n in a]:
        out.append("the order of the families")
    return "; ".join(out)


def registration_conflict(sweep_dir: str, plan: str | None) -> str | None:
    """Why `plan` cannot be registered in `sweep_dir` (it registered another), or None."""
    path = registered_plan(sweep_dir)
    if path is None or plan is None:
        return None
    differ = plan_differences(load_plan(path), load_plan(plan), ("the registered plan", plan))
    if not differ:
        return None
    return (
        f"{path}: the sweep registered another analysis plan before its runs (it differs from "
        f"{plan} in {', '.join(differ)}); a plan is registered once: resume without --plan (or "
        f"with --plan {path}), or launch into a new sweep folder (--sweep-dir); `report --plan "
        f"{plan}` applies the other plan to the sweep, as an exploratory re-analysis"
    )


def plan_arm_problems(
    plan: Plan, objectives: dict[str, dict], axis: bool = True, where: str = "the project"
) -> list[str]:
    """What in `plan` names no arm among {name: objective record}, the arms of `where` (the
    built-in ones and ./sweep_arms.toml's; a report adds its sweep's): its baseline (an arm
    name) and each kind of its contrast (an arm's name without its axis part); where those are
    right and `axis`, what keeps its axis from being fitted."""
    kinds = list(dict.fromkeys(arm_kind(o, plan.axis) for o in objectives.values()))
    problems = []
    if plan.baseline not in objectives:
        problems.append(
            f"the plan's baseline {plan.baseline!r} is no arm of {where} (the arms: "
            f"{', '.join(objectives)})"
        )
    for kind in plan.contrast:
        if kind not in kinds:
            problems.append(
                f"the plan's contrast names {kind!r}, the kind of no arm of {where} (a kind is "
                f"an arm's name without its {plan.axis} part; the kinds: {', '.join(kinds)})"
                + _unread_axis_hint(plan, kind, objectives)
            )
    if axis and not problems:
        problems += [f"its axis {plan.axis}: {p}" for p in axis_values(plan, objectives)[1]]
    return problems


def register_plan(
    sweep_dir: str,
    plan: str | None = None,
    when: str = "",
    by: str = "python -m prefix_titan.sweep launch",
) -> str | None:
    """Write the analysis plan (the package's by default) into the sweep folder before its
    runs: the plan its report applies, and compares any other plan with. The same plan again
    (a resumed or multi-node launch) is fine; another is refused. A sweep folder whose runs
    began before any plan was registered gets none (None): registering one after the runs
    began would not be pre-registration; but a plan with the settings a launch started them
    under (their records, launched_plans) is registered again where its file was removed."""
    given = load_plan(plan)
    path = os.path.join(sweep_dir, REGISTERED)
    if os.path.exists(path):
        conflict = registration_conflict(sweep_dir, given.source)
        if conflict:
            raise ValueError(conflict)
        return path
    again = runs_began(sweep_dir)
    if again and plan_digest(given) not in launched_plans(sweep_dir):
        return None
    with open(given.source) as f:
        text = f.read()
    os.makedirs(sweep_dir, exist_ok=True)
    when_ = (  # the file removed after the runs began: only the settings they recorded
        "again, with the settings the sweep's runs were launched under (its file was removed)"
        if again
        else "before the sweep's runs began"
    )
    header = (
        f"{REGISTERED_HEADER}`{by}`{when} from "
        f"{os.path.abspath(given.source)}, {when_}: the report applies "
        f"it; another plan (report --plan) is an exploratory re-analysis.\n"
        f"{DIGEST}{plan_digest(given)}\n"
    )
    # Written whole beside it, then linked into place only if no launch registered one in the
    # meantime (two launches at once: one plan wins, the other is compared with it).
    draft = f"{path}.{os.getpid()}.draft"
    write_atomically(draft, header + text)
    os.chmod(draft, 0o444)  # read-only: the registered text is not edited by mistake
    try:
        os.link(draft, path)
    except FileExistsError:
        conflict = registration_conflict(sweep_dir, given.source)
        if conflict:
            raise ValueError(conflict) from None
    finally:
        os.remove(draft)
    return path


def started_under(records) -> set[str]:
    """The sha256 of the plans (plan_digest) under which a sweep launch started the runs whose
    records (RUN_CONFIG's contents) are given: their starts' LAUNCH_PLAN_ENV."""
    found = set()
    for record in records:
        starts = record.get(STARTS) if isinstance(record, dict) else None
        for start in starts if isinstance(starts, list) else ():
            if isinstance(start, dict) and isinstance(start.get("plan_sha256"), str):
                found.add(start["plan_sha256"])
    return found


def launched_plans(sweep_dir: str) -> set[str]:
    """started_under the records of the runs under `sweep_dir`; empty where none was started
    so (a damaged record is left out: the report names it)."""
    records = []
    for folder, _, files in os.walk(sweep_dir) if os.path.isdir(sweep_dir) else ():
        if RUN_CONFIG in files:
            try:
                with open(os.path.join(folder, RUN_CONFIG)) as f:
                    records.append(json.load(f))
            except (OSError, ValueError):
                continue
    return started_under(records)


def launch_deviation(
    launched: set[str], sweep_dir: str, registered: str | None, applied: Plan
) -> str | None:
    """Where a sweep launch started runs under `sweep_dir` under a registered plan (`launched`:
    started_under their records) that is not the one there now: the file removed (a report
    would apply the package's plan as if it were registered) or replaced by other settings, one
    run or start at least launched under another plan than the file there now; None where every
    start agrees with it (the file removed: with the plan `applied`), or where no launch
    recorded one."""
    named = ", ".join(d[:12] for d in sorted(launched))
    if registered is None:
        if launched <= {plan_digest(applied)}:
            return None
        return (
            f"the sweep's runs were started by a sweep launch under a registered plan (sha256 "
            f"{named}…) that is no longer in {sweep_dir} ({REGISTERED} removed): the plan "
            "applied is not known to be the registered one"
        )
    try:
        now = plan_digest(load_plan(registered))
    except ValueError:  # (left to the plan's own refusal)
        return None
    if launched <= {now}:  # (a run started under another plan: it was replaced meanwhile)
        return None
    return (
        f"{registered} has other settings (sha256 {now[:12]}…) than the plan the runs were "
        f"launched under (sha256 {named}…): it was replaced after the runs began"
    )


def runs_began(sweep_dir: str) -> bool:
    """Some run under `sweep_dir` began (it wrote its run_config.json)."""
    return os.path.isdir(sweep_dir) and any(RUN_CONFIG in f for _, _, f in os.walk(sweep_dir))


def plan_text(plan: Plan, unread: bool = False) -> list[str]:
    """The plan in words and its families' table; `unread`: no arm of the contrast lies on the
    plan's axis (unread_axis), so no trend along it is announced."""
    trend = (
        f"Trend: none, no arm of the contrast lies on the plan's axis {plan.axis}."
        if unread
        else f"Trend (reported, not claimed): along {plan.axis}, {plan.axis_scale} scale."
    )
    lines = [
        f"Question: {plan.question}",
        f"Baseline: {plan.baseline}. Contrast: every arm of {', '.join(plan.contrast)} against it. "
        f"Familywise alpha {plan.alpha} per family, over its primary and exploratory claims "
        f"together (a graphical procedure: alpha split over the contrast's arms on the primary, "
        f"a claimed arm's share passed half to its exploratory metrics, half to the other arms). "
        f"Metrics: the mean of each "
        f"run's last {plan.checkpoints} evaluated checkpoints. "
        + (
            "Each arm - baseline's error: the residual variance pooled over every arm. "
            if plan.variance == "pooled"
            else "Each arm - baseline's error: the baseline's residual variance apart from the "
            "other arms' pooled one (variance = baseline_apart). "
        )
        + trend,
        "",
        "| family | primary | exploratory |",
        "|---|---|---|",
    ]
    for f in plan.families:
        lines.append(f"| {f.name} | {f.primary} | {', '.join(f.exploratory) or '-'} |")
    return lines


def arm_kind(objective: dict, axis: str = "tau") -> str:
    """The kind of an arm: its name without the part of the plan's axis (along tau:
    prefix_tau0.5 -> prefix, prefix_norm_tau2.0 -> prefix_norm, prefix_tau0.5_vocab ->
    prefix_vocab, ce -> ce): the arms that differ only along the axis, which a trend joins and a
    plan's contrast names."""
    from ..objectives import ObjectiveSpec

    return ObjectiveSpec.from_record(objective).arm_name(leave_out=axis)


def axis_value(objective: dict, axis: str = "tau") -> float | None:
    """Where an arm lies along the plan's axis: the setting's value where its family reads it
    (a built-in family that reads the setting; a family of one's own whose `reads` names it,
    or whose name shows it where the family does not import here, or, for options.KEY, that
    declares KEY, at its default where the arm leaves it unset); None where the arm is not on
    the axis. A value that is not a number is refused, naming it; options.KEY of a family that
    declares no KEY (a built-in family declares none) raises UndeclaredAxis."""
    from ..objectives import ObjectiveSpec, families

    spec = ObjectiveSpec.from_record(objective)
    built_in = ":" not in spec.name
    given = True
    if axis.startswith("options."):
        if built_in:  # (off the axis where a family of the contrast declares KEY: axis_values)
            raise UndeclaredAxis(
                f"the plan's axis {axis}: {spec.name} is a built-in family, which takes no "
                "options (options.KEY is a setting of a family of one's own)"
            )
        key = axis[len("options.") :]
        value = spec.family_options().get(key)
        if value is None:
            declared = families.declared_settings(families.resolve_family(spec.name))
            if declared is not None and key not in declared:
                shown = families.declared_shown(declared)
                raise UndeclaredAxis(
                    f"the plan's axis {axis}: {spec.name} declares no setting {key} (its "
                    f"settings: {shown})"
                )
            value, given = (declared or {}).get(key), False
    else:
        try:  # the settings its family reads (one of one's own: where it says, its `reads`)
            reads = axis in (families.family_reads(spec) or ())
        except ValueError:  # a family of one's own that does not import here: by its name
            reads = False
        shows = spec.arm_name(leave_out=axis) != spec.arm_name()
        value = getattr(spec, axis) if reads or shows else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"the plan's axis {axis}: arm {spec.arm_name()} "
            + ("sets it to" if given else "leaves it at its family's default,")
            + f" {value!r}, not a number (a trend needs numbers)"
        )
    return float(value)


class UndeclaredAxis(ValueError):
    """The plan's axis options.KEY, for an arm whose family declares no setting KEY."""


def _unread_axis_hint(plan: Plan, kind: str, objectives: dict[str, dict]) -> str:
    """Where the contrast names a family of one's own whose arms have no part along the axis
    options.KEY because the family declares no setting KEY (a typo of the key, say): that."""
    from ..objectives import ObjectiveSpec

    if not plan.axis.startswith("options."):
        return ""
    for o in objectives.values():
        if ObjectiveSpec.from_record(o).name == kind:
            try:
                axis_value(o, plan.axis)
            except ValueError as e:
                return f"; {e}"
    return ""


def axis_values(plan: Plan, objectives: dict[str, dict]) -> tuple[dict, list[str]]:
    """({arm: its value along the plan's axis, or None}, what keeps the plan's trend from being
    fitted) for a sweep whose arms are {name: objective record}: an arm of the contrast whose
    value is no number, or whose family does not declare the axis' setting options.KEY where
    no family of the contrast declares it (a typo of the key, say; where one does, the others'
    arms lie off the axis, as a family that does not read tau has no trend along it), a value
    at or below
    0 on a log scale, above 1 on a log_one_minus one (an arm at 1 lies on no point of it:
    at_the_limit). `sweep launch` refuses a plan with any (before it is registered); the
    report fits no trend and says why. A contrast none of whose arms reads the axis is no
    problem (a plan may compare arms without a trend): `unread_axis` says it."""
    kinds = {a: arm_kind(o, plan.axis) for a, o in objectives.items()}
    along: dict[str, float | None] = {}
    problems, undeclared, declared = [], [], False
    for a, o in objectives.items():
        along[a] = None
        if kinds[a] not in plan.contrast:
            continue
        try:
            along[a] = axis_value(o, plan.axis)
            declared = True  # (its family reads or declares the setting, whatever its value)
        except UndeclaredAxis as e:
            undeclared.append(str(e).removeprefix(f"the plan's axis {plan.axis}: "))
        except ValueError as e:
            problems.append(str(e).removeprefix(f"the plan's axis {plan.axis}: "))
    if undeclared and not declared:
        problems += list(dict.fromkeys(undeclared))  # no family declares it: a typo, say
    if plan.axis_scale == "log":
        off = [f"{a} ({v:g})" for a, v in along.items() if v is not None and v <= 0]
        if off:
            problems.append(
                f'{", ".join(off)} at or below 0 on its log scale (axis_scale = "linear" fits them)'
            )
    if plan.axis_scale == "log_one_minus":
        for a in at_the_limit(plan, along):  # compared, on no point of the line (limit_note)
            along[a] = None
        off = [f"{a} ({v:g})" for a, v in along.items() if v is not None and v > 1]
        if off:
            problems.append(
                f"{', '.join(off)} at or above 1 on its log_one_minus scale, ln(1 - value) "
                '(axis_scale = "linear" fits them)'
            )
    if problems:
        along = dict.fromkeys(along)
    return along, problems


def at_the_limit(plan: Plan, along: dict) -> list[str]:
    """The arms at 1 on a log_one_minus axis ({arm: its value along it}): ln(1 - 1) is no
    number, so such an arm (position_gamma = 1, weights k) is compared with the baseline but lies
    on no point of the trend, as an arm without the setting lies at none."""
    if plan.axis_scale != "log_one_minus":
        return []
    return [a for a, v in along.items() if v == 1]


def _on_axis(objective: dict, plan: Plan):
    """The objective's value along the plan's axis, None where it has none (or no number)."""
    try:
        return axis_value(objective, plan.axis)
    except ValueError:  # (UndeclaredAxis included)
        return None


def limit_note(plan: Plan, arms: list[str]) -> str:
    """The note on the arms of at_the_limit."""
    return (
        f"{', '.join(arms)} at {plan.axis} = 1 (ln(1 - 1) is no number on the log_one_minus "
        f"scale): compared with {plan.baseline}, on no point of the trend along {plan.axis} "
        '(axis_scale = "linear" puts it on the line)'
    )


def compared_arms(plan: Plan, objectives: dict[str, dict]) -> list[str]:
    """The arms of `objectives` ({arm: objective record}) the plan compares with its baseline:
    those of a kind its contrast names, the baseline aside."""
    return [
        a
        for a, o in objectives.items()
        if arm_kind(o, plan.axis) in plan.contrast and a != plan.baseline
    ]


def unread_axis(plan: Plan, objectives: dict[str, dict]) -> str | None:
    """A note when arms of the plan's contrast are among `objectives` ({arm: objective record})
    but none of them reads the plan's axis (no trend can be fitted), else None."""
    along, problems = axis_values(plan, objectives)
    contrast = [a for a, o in objectives.items() if arm_kind(o, plan.axis) in plan.contrast]
    if problems or not contrast or any(along[a] is not None for a in contrast):
        return None
    return (
        f"no trend along the plan's axis {plan.axis}: no arm of the contrast "
        f"({', '.join(contrast)}) lies on it (a built-in family lies on the settings it reads; "
        "a family of one's own, on a setting its arms set away from the default, or on an "
        "options.KEY it declares)"
    )


@dataclass
class Comparison:
    family: str
    metric: str
    arm: str
    baseline: str
    primary: bool
    estimate: float
    low: float | None
    high: float | None
    p: float | None
    p_adjusted: float | None = None
    se: float | None = None
    """the estimate's standard error, by the plan's variance rule (None: not testable)"""
    df: float | None = None
    """the degrees of freedom of its t (baseline_apart: Satterthwaite's, kept nearer S - 1, not
    a whole number: the test's own, so that se and df give back its p-value and interval)"""
    direction: str | None = None
    """better / worse where claimed, else None"""
    claimed: bool = False
    aa_check: bool = False
    """a CE-equivalent arm against ce: a claim here is a warning about the pipeline"""
    prior_only: bool = False
    """a claim on a character metric that its items calibrated by their blank twins do not leave
    standing (blank_twins): a change of the model's prior over the choices, not of knowledge"""
    final: bool = False
    """at the final evaluated step alone (a sensitivity check: never claimed)"""
    seedwise: bool = False
    """baseline_apart, 3 or more seeds: the arm's residual variance above the other compared
    arms' (inference.noisier, at OWN_VARIANCE_LEVEL), so compared by its per-seed differences
    from the baseline"""


@dataclass
class Analysis:
    plan: Plan
    arms: list[str]
    seeds: list
    steps: list[int]
    kinds: dict[str, str]
    along: dict[str, float | None]
    """{arm: its value along the plan's axis}, for the arms of the contrast's kinds on it (else
    None)"""
    tables: dict[str, dict[str, dict]] = field(default_factory=dict)
    """{metric: {arm: {seed: value}}}: the plan's averages"""
    final: dict[str, dict[str, dict]] = field(default_factory=dict)
    """the same at the final evaluated step (validation: the last row)"""
    fits: dict[str, inference.Fit] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    trends: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    answer: str = ""
    scope: str = ""
    """what the runs were (model flavor, steps, tokens per step), as the answer's claims say where
    they hold; empty where the records do not say"""
    equivalent: list[str] = field(default_factory=list)
    """the CE-equivalent arms: a target that keeps at least CE_EQUIVALENT on the gold and ce's
    token weighting (checked against ce: the A/A checks)"""
    unaligned: list[str] = field(default_factory=list)
    """the metrics left out because the runs have them at different steps (a note says why)"""
    target_tables: dict[str, str | None] = field(default_factory=dict)
    """{arm: the sha256 of the target table its runs trained towards (their record's
    target_table), None where not recorded or not the same for every seed}"""
    table_apart: dict[str, list[str]] = field(default_factory=dict)
    """{metric of OWN_TABLE: the arms of the contrast not compared on it, trained towards
    another table than the baseline's (or one not recorded)}"""
    simulated: bool = False
    """every run is the simulator's (SIMULATED)"""
    not_finite: dict[str, dict[str, list]] = field(default_factory=dict)
    """{metric: {arm: the seeds whose value is not finite (a run that diverged, as a rule)}}: the
    arm is not compared on it, and the notes and the answer say so"""

    @property
    def claims(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.claimed]

    def primary_comparisons(self, family: str) -> list[Comparison]:
        """A family's comparisons of each arm with the baseline on its primary metric (not the
        A/A checks, not the final step alone)."""
        return [
            c
            for c in self.comparisons
            if c.family == family and c.primary and not c.aa_check and not c.final
        ]


def _check_evaluations(runs: list[dict], last: int) -> list[int]:
    """The evaluated steps every run's averages use; refuses runs evaluated at other steps, with
    another --limit or another task version (naming them)."""
    evaluated = [r for r in runs if evaluated_steps(r)]
    if not evaluated:
        return []
    used = {r["folder"]: tuple(evaluated_steps(r)[-last:]) for r in evaluated}
    if len(set(used.values())) > 1:
        said = {r["folder"]: r["folder"] + _unfinished(r) for r in evaluated}
        lines = _odd_ones(
            {said[f]: f"steps {', '.join(map(str, s))}" for f, s in used.items()}, "evaluated runs"
        )
        if none := [r["folder"] for r in runs if r not in evaluated]:
            lines.append(f"  not evaluated at all: {', '.join(none)}")
        agree = _common_last(list(used.values()))
        way = (
            f"or pass --checkpoints {agree} (to report or power --from): the "
            + ("final steps agree" if agree == 1 else f"last {agree} steps agree")
            if agree
            else "or leave the seeds of the runs whose last evaluated step differs out "
            "(--seeds; unfinished, or evaluated before they finished: finish and evaluate them "
            "to keep them)"
        )
        raise ValueError(
            f"the runs were evaluated at different steps, so their metrics cannot be compared "
            f"(the analysis averages each run's last {last}):\n" + "\n".join(lines) + "\nEvaluate "
            f"every run at the same checkpoints (eval --all-checkpoints), {way}."
        )
    steps = list(next(iter(used.values())))
    probed = [
        r["folder"]
        for r in evaluated
        if all(EMBEDDING_PROBE in r["steps"][s]["results"] for s in steps)
    ]
    if probed and len(probed) < len(evaluated):
        lacking = [r["folder"] for r in evaluated if r["folder"] not in probed]
        raise ValueError(
            f"the embedding probe (part of char composite) was run at steps "
            f"{', '.join(map(str, steps))} for some runs only; without it: {', '.join(lacking)}. "
            "Run it for every run (eval --tasks embedding_probe) or for none."
        )
    for what in ("limits", "versions", "probes"):
        seen: dict[str, dict] = {}
        for r in evaluated:
            for s in steps:
                values = dict(r["steps"][s].get(what) or {})
                if what == "versions" and EMBEDDING_PROBE in r["steps"][s]["results"]:
                    values.setdefault(EMBEDDING_PROBE, 1)  # version 1 recorded none
                for task, value in values.items():
                    seen.setdefault(task, {})[f"{r['folder']} step {s}"] = value
        for task, values in seen.items():
            if len(set(map(str, values.values()))) > 1:
                name = {
                    "limits": "--limit",
                    "versions": "task version",
                    "probes": "probe build (--probe-words, --probe-items, --probe-seed, "
                    "--probe-shots; the run's training shards give the words by default)",
                }[what]
                shown = {
                    k: "all items (no --limit)" if what == "limits" and v is None else str(v)
                    for k, v in values.items()
                }
                detail = "\n".join(_odd_ones(shown, "evaluations"))
                raise ValueError(
                    f"{task} was evaluated with a different {name} for some runs, so the runs "
                    f"cannot be compared on it:\n{detail}\nEvaluate them again alike (`eval "
                    "--all-checkpoints RUN_DIR` evaluates again a task of this package recorded "
                    "at another version; --replace evaluates a step again whole)."
                )
    return steps


def _common_last(steps: list[tuple]) -> int:
    """The largest k (0 where none) for which the last k of every run's `steps` are the same."""
    k = 0
    while k < min(map(len, steps)) and len({s[-(k + 1) :] for s in steps}) == 1:
        k += 1
    return k


def _check_validations(runs: list[dict], last: int) -> None:
    """Refuses runs whose validation rows averaged (each one's last `last` after step 1) are at
    other steps than the others' (naming them, with each one's last validation step), as
    _check_evaluations refuses evaluations: one run's shorter log took every validation metric
    out of the comparison for every run. Called where the plan compares a validation metric (else
    they are left out of the per-arm table with a note). Runs with no validation row after step 1 are not
    refused (their arm is not compared on the validation metrics: a note says why)."""
    validated = [r for r in runs if validation_steps(r, last)]
    used = {r["folder"]: tuple(validation_steps(r, last)) for r in validated}
    if len(set(used.values())) < 2:
        return
    lines = _odd_ones(
        {
            r["folder"]
            + _unfinished(r)
            + (
                f" ({METRICS_LOG} ends in a torn line, not read)" if r.get("log") == "torn" else ""
            ): (
                f"steps {', '.join(map(str, used[r['folder']]))} "
                f"(last validation step {max(r['validation'])})"
            )
            for r in validated
        },
        "validated runs",
    )
    short = [r for r in validated if unfinished(r) is not None]
    common = collections.Counter(used.values()).most_common(1)[0][0]
    odd = {r["seed"] for r in validated if used[r["folder"]] != common}
    kept = sorted({r["seed"] for r in runs} - odd, key=seed_order)
    agree = _common_last(list(used.values()))
    seeds = sorted({r["seed"] for r in runs} - {r["seed"] for r in short}, key=seed_order)
    if short:
        way = "finish the unfinished runs (the same `sweep launch` resumes a run)" + (
            f", or report the seeds whose runs finished (--seeds {' '.join(map(str, seeds))})"
            if len(seeds) > 1
            else ""
        )
    else:
        way = (
            "train every run with the same training.steps and validation.freq (with the same "
            "settings, a run without a row that the others have was stopped between saving that "
            "step and validating it: docs/runs.md, Resuming), or leave out the seeds of the runs "
            "whose rows differ"
            + (
                f" (--seeds {' '.join(map(str, kept))}: an exploratory report, a seed left out "
                "after the results)"
                if len(kept) > 1
                else " (--seeds)"
            )
        )
    if agree:
        way += (
            f", or pass --checkpoints {agree} (to report or power --from): the "
            + ("final rows agree" if agree == 1 else f"last {agree} rows agree")
            + " (it averages the evaluated checkpoints alike)"
        )
    raise ValueError(
        "the runs were validated at different steps, so their validation metrics (val CE and "
        f"the others of {METRICS_LOG}) cannot be compared (the analysis averages each run's last "
        f"{last} validation rows after step 1):\n" + "\n".join(lines) + f"\nTo compare them, {way}."
    )


def unfinished(run: dict) -> tuple[int | None, int] | None:
    """(its last recorded step, None where it recorded none; its configured training.steps) for
    a run whose metrics log stops before those steps (still running, or stopped), else None."""
    planned = ((run.get("config") or {}).get("training") or {}).get("steps")
    last = run.get("last_step")
    if isinstance(planned, int) and planned > 0 and (last is None or last < planned):
        return last, planned
    return None


def _unfinished(run: dict) -> str:
    """The words " (unfinished: step N of M)" for an unfinished run, else none."""
    if (short := unfinished(run)) is None:
        return ""
    last, planned = short
    return f" (unfinished: {'no step recorded' if last is None else f'step {last}'} of {planned})"


def _odd_ones(values: dict[str, str], what: str) -> list[str]:
    """Lines for a refusal of values that should agree ({where: value}): the value most of them
    share, counted, then each one with another value, so that the few that differ are not lost
    among the many alike (a sweep of 42 runs evaluated at 3 steps has 126). Where no value is
    shared by more than one, every one is listed."""
    counts = collections.Counter(values.values())
    (common, n), *rest = counts.most_common()
    if n < 2 or any(k == n for _, k in rest):
        return [f"  {k}: {v}" for k, v in values.items()]
    return [f"  {n} of the {len(values)} {what}: {common}; the others:"] + [
        f"  {k}: {v}" for k, v in values.items() if v != common
    ]


def _table(
    runs_by_arm: dict,
    m,
    last: int,
    notes: list[str],
    steps: list[int] | None = None,
    left_out: dict[str, list[str]] | None = None,
    absent: dict[str, list[str]] | None = None,
    bad: dict[str, list] | None = None,
) -> dict[str, dict]:
    """{arm: {seed: value}} of metric `m`; a metric read at different steps in different runs
    (evaluated with other task sets at some checkpoints) is left out, its name filed in
    `left_out` under the reason (metrics left out for the same reason share one note), and one
    read at fewer of the evaluated `steps` than the others is noted, and so are the runs that lack
    a metric the others have (in `absent` under the reason, where given); a value that is not
    finite is left out, noted, and its seed filed in `bad` under its arm (where given)."""
    out: dict[str, dict] = {}
    used: dict[tuple, list[str]] = {}
    missing, short, seeds = [], {}, set()
    for arm, by_seed in runs_by_arm.items():
        out[arm] = {}
        for seed, run in by_seed.items():
            seeds.add(seed)
            if unfinished(run) is not None:  # (still running, or stopped)
                short[f"{arm} seed {seed}"] = seed
            v, read_at = run_value(run, m, last)
            if v is None:
                missing.append((f"{arm} seed {seed} ({run['folder']})", run))
                continue
            used.setdefault(read_at, []).append(run["folder"])
            if not math.isfinite(v):
                notes.append(
                    f"{m.name} is not finite for {arm} seed {seed} ({run['folder']}: diverged?): "
                    f"{arm} is not compared on it, and its mean is over its other seeds"
                )
                if bad is not None:
                    bad.setdefault(arm, []).append(seed)
                continue
            out[arm][seed] = v
    if len(used) > 1:
        where = "; ".join(  # the runs named where few (the odd ones out, as a rule)
            f"{', '.join(map(str, s))} in {len(f)} run(s)" + (f" ({', '.join(f)})" * (len(f) <= 3))
            for s, f in used.items()
        )
        kept = sorted(seeds - set(short.values()))
        fix = (
            f"{', '.join(short)} {'is' if len(short) == 1 else 'are'} unfinished: finish "
            f"{'it' if len(short) == 1 else 'them'} (the same `sweep launch` resumes a run)"
            + (
                f", or report the seeds whose runs finished (--seeds {' '.join(map(str, kept))})"
                if kept
                else ""
            )
            if short
            else "train every run with the same training.steps and validation.freq (with the same "
            "settings, a run without a row that the others have was stopped between saving that "
            "step and validating it, as runs validated after the save could be: docs/runs.md, "
            "Resuming)"
            if m.source == "validation"
            else "evaluate every run at the same checkpoints with the same tasks"
        )
        if left_out is not None:
            left_out.setdefault(f"the runs have it at different steps ({where}); {fix}", []).append(
                m.name
            )
        return {arm: {} for arm in out}
    if used and missing:
        by_where: dict[str, list[str]] = {}
        for name, run in missing:
            where = log_gap(run) if m.source == "validation" else "its evaluations do not have it"
            by_where.setdefault(where, []).append(name)
        fix = ""
        if m.source == "validation":
            on = [r for _, r in missing if not validation_off(r)]
            fix = (f"; {validate_again(len(missing) == 1)}" if on else "") + (
                "; a run trained with validation off is trained again with it on"
                if len(on) < len(missing)
                else ""
            )
        why = (
            "no value for "
            + "; for ".join(f"{', '.join(names)}: {where}" for where, names in by_where.items())
            + f"; {'that arm is' if len(missing) == 1 else 'those arms are'} not compared on it"
            + fix
        )
        if absent is None:
            notes.append(f"{m.name}: {why}")
        else:
            absent.setdefault(why, []).append(m.name)
    if used and steps and m.source != "validation" and list(next(iter(used))) != list(steps):
        notes.append(
            f"{m.name}: evaluated at step(s) {', '.join(map(str, next(iter(used))))} only of "
            f"{', '.join(map(str, steps))}; averaged over those"
        )
    return out


def _complete(table: dict[str, dict], seeds: list) -> list[str]:
    return [a for a, v in table.items() if all(s in v for s in seeds)]


def _direction(estimate: float, lower_is_better: bool) -> str:
    return "better" if (estimate < 0) == lower_is_better else "worse"


def analyse(
    runs_by_arm: dict[str, dict],
    plan: Plan,
    last: int | None = None,
    answer: bool = True,
    read: tuple[str, ...] = (),
) -> Analysis:
    """The plan applied to {arm: {seed: run}} (runs.group_arms), every arm at the same seeds (a
    ValueError says which arm misses which). answer=False leaves the answer in words out (empty
    but for a failed A/A check's sentence), and with it the detectable differences it states:
    for simulations that count the claims alone; the comparisons, claims and notes are the
    same. `read`: metrics to read besides the plan's (their tables, and `fit_of` their fits:
    power --from measures their sd)."""
    problem = unpaired(runs_by_arm, plan.baseline) or unplaced(runs_by_arm)
    if problem:
        raise ValueError(problem)
    last = plan.checkpoints if last is None else last
    arms = list(runs_by_arm)
    seeds = sorted(next(iter(runs_by_arm.values())))
    runs = [r for by_seed in runs_by_arm.values() for r in by_seed.values()]
    steps = _check_evaluations(runs, last)
    compared = {n for f in plan.families for n in (f.primary, *f.exploratory)}
    if any(metric(n).source == "validation" for n in compared):  # (else left out, a note)
        _check_validations(runs, last)
    first = {a: next(iter(s.values())) for a, s in runs_by_arm.items()}
    kinds = {a: arm_kind(r["objective"], plan.axis) for a, r in first.items()}
    along, axis_problems = axis_values(plan, {a: r["objective"] for a, r in first.items()})
    result = Analysis(plan, arms, seeds, steps, kinds, along, scope=_scope(first))
    at_one = {
        a: 1 if along[a] is None and _on_axis(first[a]["objective"], plan) == 1 else None
        for a in first
    }
    limit = [a for a in at_the_limit(plan, at_one) if kinds[a] in plan.contrast]
    if limit and not axis_problems:
        result.notes.append(limit_note(plan, limit))
    if not axis_problems and any(v is not None for v in along.values()):
        for kind in plan.contrast:  # (a trend needs arms at 3 values of the axis)
            values = sorted({v for a, v in along.items() if kinds[a] == kind and v is not None})
            if len(values) < 3 and any(kinds[a] == kind for a in arms):
                at = f"at {', '.join(f'{v:g}' for v in values)}" if values else "on no point of it"
                result.notes.append(
                    f"no trend along {plan.axis} for kind {kind}: its arms lie {at}, and a trend "
                    "needs arms at 3 values or more"
                )
    result.target_tables = _target_tables(runs_by_arm)
    result.simulated = all(
        ((r.get("config") or {}).get("job") or {}).get("description") == SIMULATED for r in runs
    )
    if axis_problems:
        result.notes.append(
            f"no trend along the plan's axis {plan.axis}: {'; '.join(axis_problems)}"
        )
    unread = unread_axis(plan, {a: r["objective"] for a, r in first.items()})
    if unread:
        result.notes.append(unread)
    if torn := torn_logs(runs_by_arm):
        result.notes.append(torn)
    wanted = {n for f in plan.families for n in (f.primary, *f.exploratory)} | set(read)
    wanted |= {"val CE", "target gold mass", "implied CE", *AA_METRIC.values(), *SUMMARY}
    if any(r["objective"].get("position_gamma") is not None for r in first.values()):
        wanted |= set(POSITION_METRICS)  # where position weighting moves the cost
    wanted |= {READ[n] for n in wanted if n in READ}  # (blank_twins)
    if unread_tasks := _unanalysed(runs, wanted):
        result.notes.append(unread_tasks)
    if probes_alone := _composite_without_embedding(runs, steps, wanted):
        result.notes.append(probes_alone)
    left_out: dict[str, list[str]] = {}
    absent: dict[str, list[str]] = {}
    for name in sorted(wanted):
        m = metric(name)
        bad: dict[str, list] = {}
        result.tables[name] = _table(
            runs_by_arm, m, last, result.notes, steps, left_out, absent, bad
        )
        if bad and name not in {n for names in left_out.values() for n in names}:
            result.not_finite[name] = bad
        result.final[name] = _table(runs_by_arm, m, 1, [])
    result.notes += [f"{', '.join(names)} left out: {why}" for why, names in left_out.items()]
    result.unaligned = [n for names in left_out.values() for n in names]
    result.notes += [f"{', '.join(names)}: {why}" for why, names in absent.items()]
    baseline = plan.baseline
    # the arms compared with the baseline: those of the contrast's kinds, the baseline itself not
    # (a baseline of a contrast kind, e.g. prefix_tau1.0 against the other prefix arms)
    contrast = [a for a in arms if result.kinds[a] in plan.contrast and a != baseline]
    equivalent = result.equivalent = _ce_equivalent(result, first)
    if baseline not in arms:
        result.notes.append(f"no {baseline} arm: nothing is compared or claimed")
        result.answer = f"No claim: the sweep has no {baseline} arm to compare with."
        return result
    if len(seeds) < 2:
        result.answer = (
            "No claim can be made: with one seed the training noise is not measured. Run more "
            "seeds (`python -m prefix_titan.sweep launch --seeds ...`)."
        )
    outside = [a for a in arms if a not in (baseline, "ce", *contrast, *equivalent)]
    if outside:
        kinds = sorted({result.kinds[a] for a in outside})
        result.notes.append(
            f"not compared with {baseline}, their kind ({', '.join(kinds)}) not in the plan's "
            f"contrast ({', '.join(plan.contrast)}): {', '.join(outside)}; a plan (--plan FILE) "
            "whose contrast names it compares them"
        )
    absent = [k for k in plan.contrast if k not in result.kinds.values()]
    if absent:
        result.notes.append(
            f"the plan's contrast names {', '.join(absent)}, of which the sweep has no arm (a "
            f"kind is an arm's name without its {plan.axis} part"
            + (
                ": prefix_tau0.5_gamma0.99 is of kind prefix_gamma0.99)"
                if plan.axis == "tau"
                else ")"
            )
        )
    for family in plan.families:
        _decide_family(result, family, contrast, seeds)
        result.notes += unequal_variances(result, family.primary)
        result.notes += seed_interaction(result, family.primary)
    result.notes += blank_twins(result) + unread_words(result)
    _aa_checks(result, equivalent, seeds)
    if not result.answer and answer:
        result.answer = _answer(result, contrast) + _words_unread(result)
    failed = [c for c in result.comparisons if c.aa_check and c.claimed]
    if failed:  # first: it says the sweep's claims cannot be read yet
        result.notes.insert(
            0,
            "A/A check failed: "
            + "; ".join(
                f"{c.arm} trains as ce (its target's gold mass is at least {CE_EQUIVALENT}) yet "
                f"differs from ce on {c.metric} ({_estimated(c)}, adj. p = {c.p_adjusted:.3g})"
                for c in failed
            )
            + ": something other than the objective differs between arms (data, seeds, "
            "placement, evaluation); find it before reading any claim",
        )
        result.answer += (
            f" But the A/A check failed ({', '.join(arms := sorted({c.arm for c in failed}))} "
            f"{'differ' if len(arms) > 1 else 'differs'} from ce though "
            f"{'they train' if len(arms) > 1 else 'it trains'} as it; see the first note): read "
            "no claim until its cause is found."
        )
    return result


def _composite_without_embedding(
    runs: list[dict], steps: list[int], wanted: set[str]
) -> str | None:
    """A note where the char composites analysed were built of the character probes alone at
    some or all of the evaluations analysed (runs x `steps`): the embedding probe, the
    composites' last part where it was evaluated (`--tasks pilot` evaluates it), missing there,
    so their values are not those of a sweep evaluated with it; None where every evaluation has
    it, or the composites are not analysed. (Runs of which some have it at every step and
    others not are refused before, by _check_evaluations.)"""
    named = sorted(n for n in wanted if n.startswith("char composite"))
    at = [r["steps"][s]["results"] for r in runs for s in steps if s in r["steps"]]
    lacking = sum(EMBEDDING_PROBE not in results for results in at)
    if not named or not lacking:
        return None
    where = (
        "alone, without the embedding probe, their last part where a run was evaluated on it"
        if lacking == len(at)
        else f"alone at {lacking} of the {len(at)} evaluations analysed (runs x steps), "
        "without the embedding probe, their last part at the others"
    )
    return (
        f"{' and '.join(named)}: of the {len(CHAR_PROBES)} character probes {where} "
        "(`--tasks pilot` evaluates it; `eval --tasks embedding_probe` adds it): not comparable "
        "with a sweep's composite that has it"
    )


def _unanalysed(runs: list[dict], wanted: set[str]) -> str | None:
    """A note naming the tasks the runs were evaluated on that the analysis reads no metric of:
    CUTE's, say, which no plan names unless one's own does (their results were left out without
    a word), or a task the report has no metric for; None where there are none. A task counts as
    read where a metric analysed is named after it or reads it (a mean of the default tasks, the
    probes' composites)."""
    from ..evaluation.harness import DEFAULT_TASKS, MADE_HERE

    evaluated = {t for r in runs for e in r["steps"].values() for t in e["results"]}
    read = {t for t in evaluated if any(n == t or n.startswith(f"{t} ") for n in wanted)}
    read |= {*DEFAULT_TASKS, *MADE_HERE}  # (read by the composites and means)
    left = sorted(evaluated - read)
    if not left:
        return None
    named = [t for t in left if t in METRICS]
    other = [t for t in left if t not in METRICS]
    parts = []
    if named:  # (a metric of the report the plan does not name)
        one = len(named) == 1
        parts.append(
            f"{', '.join(named)}: the plan names {'it' if one else 'them'} nowhere "
            f"({'it is a metric' if one else 'they are metrics'} a plan's family may name as "
            "exploratory: `report --metrics` lists them)"
        )
    if other:
        parts.append(
            f"{', '.join(other)}: no metric of the report reads {'it' if len(other) == 1 else 'them'}"
        )
    return "evaluated but not analysed: " + "; ".join(parts)


def arm_variances(result: Analysis, name: str) -> dict[str, float]:
    """{arm: its residual variance / the other arms'} in the two-way fit of metric `name`
    (inference.variance_ratios: an F statistic with (S - 1, (A - 2)(S - 1)) degrees of freedom
    when the arms' variances are equal; no ratio with fewer than three arms)."""
    table = result.tables.get(name) or {}
    complete = _complete(table, result.seeds)
    f = result.fits.get(name)
    n = len(complete)
    if f is None or n != len(f.means) or n < 3 or not f.sigma2 or f.df <= 0:
        return {}
    return {a: float(r) for a, r in zip(complete, inference.variance_ratios(f.y))}


def unequal_variances(result: Analysis, name: str, level: float = 0.99) -> list[str]:
    """A note for the baseline and each arm claimed on `name` whose residual variance there is
    above the other arms' at `level` of equal variances (arm_variances' F quantile), and for
    each arm compared by its per-seed differences for it (Comparison.seedwise): the pooled
    test assumes them equal, and with the baseline's sd 1.5-2x the others' its false-claim rate
    under the null is 9-16% (simulated), not alpha (the plan's variance = baseline_apart holds
    it); a compared arm 3x as noisy makes its own false claims (10% of sweeps under the pooled
    rule; baseline_apart compares such an arm by its per-seed differences where its variance is
    above the other compared arms', inference.noisier, and the note gives that ratio). A trend's
    arms are not screened: its test (per seed) assumes nothing of their variances. A screen:
    with 3 seeds it finds only large differences."""
    from scipy.stats import f as f_dist

    mine = [c for c in result.comparisons if c.metric == name and not c.final]
    claimed = {c.arm for c in mine if c.claimed}
    switched = {c.arm for c in mine if c.seedwise}
    everyone = arm_variances(result, name)
    ratios = {
        a: r
        for a, r in everyone.items()
        if a == result.plan.baseline or a in claimed or a in switched
    }
    if not ratios:
        return []
    n, df = len(everyone), result.fits[name].df
    crit = float(f_dist.ppf(level, df / (n - 1), df / (n - 1) * (n - 2)))
    apart = result.plan.variance == "baseline_apart"

    def consequence(arm: str) -> str:
        if arm in switched:
            return (
                f"the plan's variance = baseline_apart compares it with {result.plan.baseline} "
                f"by its per-seed differences ({len(result.seeds) - 1} degrees of freedom), which "
                "assume nothing of the variances"
            )
        if arm != result.plan.baseline:
            return "its comparison assumes equal variances and may claim more often than alpha"
        if apart:
            return (
                "the plan's variance = baseline_apart gives it its own variance (the family's "
                "false claims at most alpha in simulation up to 2x the others' sd)"
            )
        return (
            "every comparison uses this arm and assumes equal variances, and may claim more "
            'often than alpha (a plan with variance = "baseline_apart" held alpha in simulation '
            "up to 2x the others' sd, at a cost in power)"
        )

    def ratio(r: float, others: str = "other arms'") -> str:
        if math.isinf(r):  # the other arms move alike on every seed
            return f"above 0 where the {others} is 0"
        return f"{r:.1f}x the {others}"

    bounds = {a: (r, crit, "other arms'", level) for a, r in ratios.items() if r > crit}
    if switched:  # the switch's own ratio: over the other compared arms (inference.noisier)
        complete, y = _complete(result.tables[name], result.seeds), result.fits[name].y
        own, arms = inference.compared_ratios(y, complete.index(result.plan.baseline))
        bound = inference.variance_bound(arms, y.shape[1], inference.OWN_VARIANCE_LEVEL)
        for a in switched:
            r = own[complete.index(a)]
            bounds[a] = (r, bound, "other compared arms'", inference.OWN_VARIANCE_LEVEL)
    return [
        f"{name}: the residual variance of {arm} is {ratio(r, others)} (above the {lv:.0%} "
        f"level of equal variances, {c:.1f}x): {consequence(arm)}; more seeds show whether it "
        "is real"
        for arm, (r, c, others, lv) in bounds.items()
    ]


def seed_interaction(result: Analysis, name: str, level: float = 0.99) -> list[str]:
    """A note where the arms of metric `name` respond to the seed by unequal amounts (Johnson and
    Graybill's test of a rank-one seed x arm interaction, inference.interaction, p at most
    1 - `level`): the two-way model takes out only the seed's average effect, and what is left
    acts as noise with fewer degrees of freedom than the pooled test counts (docs/evaluation.md:
    the pooled rule's false claims under the null above alpha, baseline_apart's not). A screen:
    with 3 seeds it names only strong interactions."""
    f = result.fits.get(name)
    found = inference.interaction(f.y) if f is not None and f.y is not None else None
    if not found or found[1] > 1 - level:
        return []
    share, p = found
    consequence = (
        "the plan's variance = baseline_apart held about alpha there in simulation (under the null)"
        if result.plan.variance == "baseline_apart"
        else "the pooled comparisons may claim more often than alpha (a plan with variance = "
        '"baseline_apart" held about alpha there in simulation under the null, at a cost in '
        "power)"
    )
    if any(t["metric"] == name for t in result.trends):
        consequence += (
            f"; the pooled trend along {result.plan.axis} in report.json too (where the seed's "
            "pull changes along the axis, p <= 0.05 in 37% of null sweeps), not the trend's own "
            "per-seed test"
        )
    return [
        f"{name}: the arms respond to the seed by unequal amounts ({share:.0%} of the residual "
        f"variation lies along one seed pattern; Johnson-Graybill p = {p:.3g}, below "
        f"{1 - level:.2g}): the seed term takes out only its average effect, and {consequence}; "
        "more seeds show whether it is real"
    ]


READ = {
    "char composite": "char composite, read",
    "char acc": "char acc, calibrated",
    **{t: f"{t}, calibrated" for t in PROBE_TASKS},
}
"""The character metrics a claim on which is checked against the same metric with each probe
item calibrated by its blank twin (the same item with the word blanked): {metric: that one}"""


def blank_twins(result: Analysis) -> list[str]:
    """A note for each claim on a character metric (READ) whose difference is not there once
    each probe item is calibrated by its blank twin: the same comparison on the READ metric, by
    the plan's variance rule, not in the claim's direction at two-sided p <= alpha (or not
    testable: no variance); a note too where the twins were not evaluated (the claim unchecked).
    The blank twin's log-likelihoods are what the model prefers among an item's choices without
    reading the word; an objective that changes that preference (label smoothing flattens it, for
    one) changes the accuracy with no more knowledge of the letters, and the twins' accuracies
    cannot show it (the items are balanced: any fixed preference scores chance on the blanks),
    while the calibrated accuracy does not move with it. The claim stays (the plan decides),
    marked `prior_only`, and the answer says so. Simulated (test_verdict.py): a change of the
    prior flags most claims, knowledge few."""
    notes = []
    for c in result.comparisons:
        twin = READ.get(c.metric)
        if not c.claimed or twin is None or c.aa_check or c.final:
            continue
        t = _read_comparison(result, twin, c)
        if t is None:
            notes.append(
                f"{c.metric}: {c.arm}'s claim is not checked against the probes' blank twins, "
                f"which not every run of {c.arm} and {c.baseline} has evaluated with its "
                "per-item log-likelihoods (`eval --tasks char_probes` runs them)"
            )
            continue
        held = (
            t.p is not None
            and t.p <= result.plan.alpha
            and np.sign(t.estimate) == np.sign(c.estimate)
        )
        if held:
            continue
        c.prior_only = True
        measured = _fmt(t.estimate) + (
            f" [{_fmt(t.low)}, {_fmt(t.high)}], p = {t.p:.3g}"
            if t.p is not None
            else " (no variance)"
        )
        notes.append(
            f"{c.metric}: {c.arm}'s claimed difference from {c.baseline} ({_fmt(c.estimate)}) is "
            f"not shown once each item is calibrated by its blank twin ({twin}: {measured}): its "
            "gain over the baseline cannot be told from a change of its prior over these items' "
            "choices (what it prefers without reading the word), so it is not shown to be "
            "character knowledge"
        )
    return notes


def _unread(result: Analysis) -> tuple[list[str], list[str]]:
    """(the arms whose `char acc - blank` is 0 on every seed, those whose 95% interval over
    seeds covers 0): the arms whose probes the word does not move, or is not shown to."""
    from .stats import t_interval

    table = result.tables.get("char acc - blank") or {}
    zero, around = [], []
    for arm in result.arms:
        values = list((table.get(arm) or {}).values())
        if len(values) < 2:
            continue
        iv = t_interval(values)
        if all(abs(v) < 1e-12 for v in values):
            zero.append(arm)
        elif iv.low is not None and not iv.excludes_zero:  # (equal values: no interval)
            around.append(arm)
    return zero, around


def unread_words(result: Analysis) -> list[str]:
    """Notes on the arms whose probes the word does not move: `char acc - blank` 0 on every seed
    (the probes scored as their blank twins) or its 95% interval over seeds around 0. Their
    character probes show no reading of the word, whatever the comparisons say."""
    zero, around = _unread(result)
    notes = []
    if zero:
        notes.append(
            f"char acc - blank is 0 on every seed for {', '.join(zero)}: their character probes "
            "scored as their blank twins (the same items, the word blanked; chance by "
            "construction), so they show no reading of the word"
        )
    if around:
        notes.append(
            f"char acc - blank's 95% interval over seeds covers 0 for {', '.join(around)}: "
            "reading the word is not shown to add anything to their probes' answers"
        )
    return notes


def _read_comparison(result: Analysis, name: str, c: Comparison):
    table = result.tables.get(name) or {}
    complete = _complete(table, result.seeds)
    if c.arm not in complete or c.baseline not in complete or len(complete) < 2:
        return None
    y = np.array([[table[a][s] for s in result.seeds] for a in complete])
    i, b = complete.index(c.arm), complete.index(c.baseline)
    return _arm_test(inference.fit(y), i, b, result.plan.variance)


def fit_of(result: Analysis, name: str) -> inference.Fit | None:
    """The arm x seed fit of metric `name` (one the plan compares, or one `analyse` was asked to
    read), None where fewer than 2 arms hold it at every seed."""
    if name in result.fits:
        return result.fits[name]
    if name not in result.tables:
        return None
    return _fit_for(result, name, result.seeds)[0]


def _fit_for(result: Analysis, name: str, seeds: list, final: bool = False):
    table = (result.final if final else result.tables)[name]
    complete = _complete(table, seeds)
    if len(complete) < 2:
        return None, complete
    f = inference.fit(np.array([[table[a][s] for s in seeds] for a in complete]))
    if not final:
        result.fits[name] = f
    return f, complete


def _arm_test(
    f: inference.Fit, arm: int, baseline: int, variance: str, apart=None
) -> inference.Test:
    """arm - baseline in the fit `f`, its error by the plan's `variance` rule (`apart`: the
    fit's inference.apart about the baseline, where already computed)."""
    if variance == "baseline_apart":
        return inference.versus_apart(f.y, arm, baseline, v=apart)
    return inference.versus(f, arm, baseline)


def _versus(f, complete, arms, baseline, variance="pooled", **fields) -> list[Comparison]:
    """Each of `arms` (those measured) against the baseline, Holm over them; the error by the
    plan's `variance` rule."""
    rows = []
    apart = None
    if variance == "baseline_apart" and any(a in complete and a != baseline for a in arms):
        apart = inference.apart_used(f.y, complete.index(baseline))
    noisier = apart.noisier if apart is not None else frozenset()
    for arm in arms:
        if arm in complete:
            t = _arm_test(f, complete.index(arm), complete.index(baseline), variance, apart)
            fields["seedwise"] = complete.index(arm) in noisier
            rows.append(
                Comparison(
                    arm=arm,
                    baseline=baseline,
                    estimate=t.estimate,
                    low=t.low,
                    high=t.high,
                    p=t.p,
                    se=t.se,
                    df=t.df,
                    **fields,
                )
            )
    for c, adj in zip(rows, inference.holm([c.p for c in rows])):
        c.p_adjusted = adj
    return rows


def _target_tables(runs_by_arm: dict[str, dict]) -> dict[str, str | None]:
    """{arm: the sha256 of the target table every run of it recorded (TARGET_TABLE), or None}"""
    out = {}
    for arm, by_seed in runs_by_arm.items():
        shas = {(r.get("config") or {}).get(TARGET_TABLE) for r in by_seed.values()}
        out[arm] = shas.pop() if len(shas) == 1 else None
    return out


def same_table(result: Analysis, arm: str, baseline: str) -> bool:
    """Whether every run of `arm` and of `baseline` recorded one and the same target table: a
    metric of OWN_TABLE measured on both is then measured on the same entries."""
    table = result.target_tables.get(arm)
    return table is not None and table == result.target_tables.get(baseline)


OWN_TABLE_WHY = (
    "{name} is measured by each run on its own target table (the model's probability on that "
    "table's other entries: 0 by construction where it has none, as ce's and label smoothing's), "
    "so against {baseline} it is compared only for an arm trained towards the same table (the "
    "runs' recorded target_table, which holds the entries' weights: a family's arms that differ "
    "in their token weighting alone, say, and not its arms at other tau, though their entries "
    "are the same: val prefix mass compares the prefix arms on one fixed set); {arms} trained "
    "towards another table than {baseline}'s (or the runs do not record "
    "theirs): a difference there would be one of the tables, not of the models"
)
"""Why a metric of OWN_TABLE is not compared for some arms (a note; the answer where primary)"""


def _unheld(result: Analysis, name: str) -> str:
    """Where no run of the sweep holds metric `name`, the words that say so (and that the
    simulator does not simulate it, where every run is simulated); else empty."""
    if name in result.unaligned or any(result.tables.get(name, {}).values()):
        return ""
    if result.simulated:
        return "no run of the sweep holds it (the simulator does not simulate it)"
    return f"no run of the sweep holds it{_how_measured(name)}"


def diverged(result: Analysis, name: str, arm: str) -> str | None:
    """Words for an arm left out of the comparisons on metric `name` for a value that is not
    finite ("seed 2's is not finite (diverged?)"), else None."""
    seeds = result.not_finite.get(name, {}).get(arm)
    if not seeds:
        return None
    if len(seeds) == 1:
        return f"seed {seeds[0]}'s is not finite (diverged?)"
    return f"seeds {', '.join(map(str, seeds[:-1]))} and {seeds[-1]}'s are not finite (diverged?)"


def _decide_family(result: Analysis, family: Family, contrast, seeds) -> None:
    plan, baseline = result.plan, result.plan.baseline
    primaries: list[Comparison] = []
    gated: list[Comparison] = []
    absent: list[str] = []
    for name in (family.primary, *family.exploratory):
        primary = name == family.primary
        f, complete = _fit_for(result, name, seeds)
        if f is None or baseline not in complete:
            if not primary:
                absent.append(name)
            else:
                gone = diverged(result, name, baseline)
                why = (
                    f"the sweep has no arm of the contrast's kinds ({', '.join(plan.contrast)})"
                    if not contrast
                    else f"{name} of {baseline}, the baseline: {gone}"
                    if gone
                    else f"{name} is left out, the runs having it at different steps (the note "
                    "on it says why and what to do)"
                    if name in result.unaligned
                    else f"{name} is not available for every run of {baseline} and another "
                    f"arm{_how_measured(name, any(result.tables.get(name, {}).values()))}"
                )
                result.notes.append(f"{family.name}: {why}: nothing compared")
            continue
        arms = contrast
        if name in OWN_TABLE:
            arms = [a for a in contrast if same_table(result, a, baseline)]
            apart = [a for a in contrast if a not in arms and a in complete]
            if apart:
                result.table_apart[name] = apart
                why = OWN_TABLE_WHY.format(name=name, baseline=baseline, arms=", ".join(apart))
                result.notes.append(
                    f"{family.name}: {why}: "
                    + (
                        "nothing compared, nothing claimed"
                        if primary and not any(a in complete for a in arms)
                        else "not compared, shown per arm (descriptive)"
                    )
                )
        fields = {"family": family.name, "metric": name, "primary": primary}
        rows = _versus(f, complete, arms, baseline, plan.variance, **fields)
        result.comparisons.extend(rows)
        if gone := {a: w for a in arms if a not in complete and (w := diverged(result, name, a))}:
            one = len(gone) == 1
            owners = "its arm's" if one else "their arms'"
            share = (
                f"; the family's alpha is split over the {len(rows)} "
                f"{'arm' if len(rows) == 1 else 'arms'} compared, and the trend along "
                f"{plan.axis} is fitted without {'it' if one else 'them'}"
                if primary
                else f" ({owners} share of alpha on it goes to {owners} other metrics, as for a "
                "comparison not made)"
            )
            result.notes.append(
                f"{family.name}: not compared on {name}: "
                + "; ".join(f"{a} ({w})" for a, w in gone.items())
                + share
            )
        if not primary:
            gated.extend(rows)
            continue
        if not rows and name in result.table_apart:
            continue
        primaries = rows
        if rows and len(seeds) > 1 and all(c.p is None for c in rows):
            result.notes.append(
                f"{family.name}: {name} has no residual variance (each arm's difference from "
                f"{baseline} is the same on every seed: the runs answered alike, or too few items "
                "moved): no interval, nothing tested"
            )
        elif untested := [c.arm for c in rows if c.p is None] if len(seeds) > 1 else []:
            result.notes.append(
                f"{family.name}: on {name}, {', '.join(untested)} "
                f"{'differs' if len(untested) == 1 else 'each differ'} from {baseline} by the same "
                "amount on every seed (no variance of the comparison: the runs answered alike, or "
                "too few items moved): no interval, not tested, and not counted as no difference"
            )
        if name not in result.table_apart:  # (a trend across tables is one of the tables)
            _trends(result, family, name, f, complete)
        f1, complete1 = _fit_for(result, name, seeds, final=True)
        if f1 is not None and baseline in complete1:
            result.comparisons.extend(
                _versus(f1, complete1, arms, baseline, plan.variance, final=True, **fields)
            )
    held = [n for n in absent if not _unheld(result, n)]
    if primaries and held:
        result.notes.append(
            f"{family.name}: exploratory {', '.join(held)} not available for every run of "
            f"{baseline} and another arm: not compared (the family's procedure runs over the "
            "metrics that are, and so do the power lines)"
        )
    for name in absent:
        if primaries and (unheld := _unheld(result, name)):
            result.notes.append(f"{family.name}: exploratory {name} not compared: {unheld}")
    rows = primaries + gated
    for c, adj in zip(rows, inference.graph_adjusted([c.p for c in rows], *_graph(rows))):
        c.p_adjusted = adj
        if adj is not None and adj <= plan.alpha:
            c.claimed, c.direction = True, _direction(c.estimate, metric(c.metric).lower_is_better)


def _graph(rows: list[Comparison]) -> tuple[list[float], list[list[float]]]:
    """The weights and transitions of a family's graphical procedure over its comparisons
    (inference.graph_adjusted): alpha is split equally over the primary comparisons; a rejected
    primary passes EXPLORATORY_SHARE of its share to its own arm's exploratory comparisons
    (equally) and the rest to the other primaries (equally: Holm's step-down among them); a
    rejected exploratory comparison passes its share to the other exploratory comparisons of its
    arm but GRAPH_EPSILON of it, which goes to the other primaries (so that the last one of an arm
    passes all of it to the other primaries). An exploratory comparison holds no share
    until its arm's primary is rejected, so it is claimed only for an arm claimed on the primary,
    and the familywise rate of false claims over the whole family is alpha whatever is true."""
    n = len(rows)
    primary = [i for i, c in enumerate(rows) if c.primary]
    own: dict[str, list[int]] = {c.arm: [] for c in rows}
    for i, e in enumerate(rows):
        if not e.primary:
            own[e.arm].append(i)
    weights = [1 / len(primary) if c.primary else 0.0 for c in rows]
    g = [[0.0] * n for _ in range(n)]
    for i, c in enumerate(rows):
        others = [j for j in primary if j != i and rows[j].arm != c.arm]
        explored = [j for j in own[c.arm] if j != i]
        if c.primary:
            to_explored = (EXPLORATORY_SHARE if others else 1.0) if explored else 0.0
        else:
            to_explored = (1.0 - GRAPH_EPSILON if others else 1.0) if explored else 0.0
        for j in explored:
            g[i][j] = to_explored / len(explored)
        for j in others:
            g[i][j] = (1.0 - to_explored) / len(others)
    return weights, g


def _trends(result: Analysis, family: Family, name: str, f, complete: list[str]) -> None:
    tests = []
    for kind in result.plan.contrast:
        arms = [a for a in complete if result.kinds[a] == kind and result.along.get(a) is not None]
        x = [result.along[a] for a in arms]
        if len(set(x)) < 3:
            continue
        x = [axis_x(v, result.plan.axis_scale) for v in x]
        index = [complete.index(a) for a in arms]
        # The test of record takes the slope at each seed (valid whatever the arms' variances
        # and any seed x arm interaction); the pooled one, beside it, assumes equal variances
        # and no interaction.
        t = inference.per_seed(f.y, inference.trend_weights(index, x, len(complete)))
        pooled = inference.trend(f, index, x)
        tests.append(
            {
                "family": family.name,
                "metric": name,
                "kind": kind,
                "arms": arms,
                "values": [result.along[a] for a in arms],
                "axis": result.plan.axis,
                "axis_scale": result.plan.axis_scale,
                **asdict(t),
                "pooled": asdict(pooled),
            }
        )
    for t, adj in zip(tests, inference.holm([t["p"] for t in tests])):
        t["p_adjusted"] = adj
    for t, adj in zip(tests, inference.holm([t["pooled"]["p"] for t in tests])):
        t["pooled"]["p_adjusted"] = adj
    result.trends.extend(tests)


def _ce_equivalent(result: Analysis, first: dict[str, dict]) -> list[str]:
    """The arms whose target keeps at least CE_EQUIVALENT on the gold (at the final step, mean
    over seeds) and that weigh the tokens as ce does (`first`: {arm: one of its runs})."""
    gold_mass = result.final.get("target gold mass", {})
    ce = first["ce"]["objective"] if "ce" in first else {}
    return [
        a
        for a in result.arms
        if a != "ce"
        and gold_mass.get(a)
        and np.mean(list(gold_mass[a].values())) >= CE_EQUIVALENT
        and weighs_as(first[a]["objective"], ce)
    ]


def weighs_as(objective: dict, other: dict) -> bool:
    """Whether two recorded objectives weigh the tokens alike (their WEIGHTING settings, e.g.
    position_gamma, equal; unset in both where a record leaves them out): a CE-equivalent target
    with another weighting is another objective, not CE in all but name."""
    from ..objectives.spec import WEIGHTING, ObjectiveSpec

    return all(
        objective.get(f.name) == other.get(f.name) for f in ObjectiveSpec.fields_of(WEIGHTING)
    )


def _aa_checks(result: Analysis, equivalent: list[str], seeds: list) -> None:
    """The CE-equivalent arms against ce on every family's primary (validation CE less its
    by-construction part), Holm over all of them: one family of checks at alpha, each by the
    plan's variance rule with ce as the baseline (baseline_apart: a noisier ce is no alarm)."""
    rows = []
    for family in result.plan.families:
        name = AA_METRIC.get(family.primary, family.primary)
        f, complete = _fit_for(result, name, seeds)
        if f is None or "ce" not in complete:
            continue
        fields = {"family": family.name, "metric": name, "primary": True, "aa_check": True}
        arms = [a for a in equivalent if name not in OWN_TABLE or same_table(result, a, "ce")]
        rows += _versus(f, complete, arms, "ce", result.plan.variance, **fields)
    for c, adj in zip(rows, inference.holm([c.p for c in rows])):
        c.p_adjusted = adj
        if adj is not None and adj <= result.plan.alpha:  # a failed A/A check is a warning
            c.claimed = True
            c.direction = _direction(c.estimate, metric(c.metric).lower_is_better)
    result.comparisons.extend(rows)


def apart_here(result: Analysis, name: str) -> inference.Apart | None:
    """The error of arm - baseline on metric `name` as the plan's variance = baseline_apart
    measures it in this sweep (inference.apart), or None: the plan pools, or fewer than three arms
    or than inference.APART_MIN_SEEDS seeds (whose comparison is the plain paired test) or no
    baseline were measured."""
    f = result.fits.get(name)
    if result.plan.variance != "baseline_apart" or f is None or f.y is None:
        return None
    complete = _complete(result.tables.get(name) or {}, result.seeds)
    if result.plan.baseline not in complete:
        return None
    return inference.apart_used(f.y, complete.index(result.plan.baseline))


def detectable_here(result: Analysis, name: str, comparisons: int) -> float | None:
    """The 80%-power detectable difference for a metric at the error this sweep measures: the
    pooled residual variance, or with variance = baseline_apart the other arms' pooled one and
    the baseline's as the test estimates it (apart_here: var less sigma^2, as a ratio of
    sigma^2); either way the power of the test the plan runs at that error, whose own estimate
    of the error will vary (inference.detectable: the `power` command's calculation). Taking
    this sweep's estimate as the test's fixed error instead (a t test at its degrees of freedom)
    stated an effect detected with 63% power at 3 seeds, not 80%."""
    f = result.fits.get(name)
    if f is None or f.df <= 0 or not f.sigma2 > 0:
        return None
    v = apart_here(result, name)
    if v is not None and not (v.var > 0 and v.sigma2 > 0):
        return None
    return inference.detectable(
        math.sqrt(f.sigma2 if v is None else v.sigma2),
        f.seeds,
        len(f.means),
        max(1, comparisons),
        result.plan.alpha,
        variance=result.plan.variance,
        # the baseline's variance as the test estimates it, over the others' (1: equal)
        baseline_ratio=1.0 if v is None else max(v.var / v.sigma2 - 1, 0.0),
    )


def first_share(
    plan: Plan, name: str, compared: int, compared_metrics: set[str] | None = None
) -> tuple[int, str]:
    """(k, role): the first share of alpha a comparison of metric `name` is tested at is alpha / k
    in this plan's graphical procedure, with `compared` arms of the contrast. A primary: alpha /
    compared (then more, as other arms are claimed); an exploratory metric: only once its arm is
    claimed on the primary, first at EXPLORATORY_SHARE of that arm's share split over the
    family's exploratory metrics (those in `compared_metrics` where given: a sweep's procedure
    runs over the ones it measured); a metric in no family is never claimed (its k as a
    primary's)."""
    for f in plan.families:
        if name == f.primary:
            return compared, "primary"
        if name in f.exploratory:
            n = sum(
                compared_metrics is None or m in compared_metrics or m == name
                for m in f.exploratory
            )  # (the metric itself counts: a line is about it, compared or not)
            if compared == 1:  # no other primary to pass to: the arm's whole share goes on
                return n, "exploratory"
            return round(compared * n / EXPLORATORY_SHARE), "exploratory"
    return compared, "not in the plan"


def _estimated(c) -> str:
    """A comparison's estimate with its interval, as the answer and the notes write them."""
    return f"{_fmt(c.estimate)} [{_fmt(c.low)}, {_fmt(c.high)}]"


def _fmt(v: float) -> str:
    shown = f"{v:+.4f}"
    return shown[1:] if float(shown) == 0 else shown  # (no sign on a rounded zero)


def _scope(first: dict[str, dict]) -> str:
    """ "flavor F, N steps of T tokens" from the runs' records (the first run's: the compared runs
    share them, which the report's invariants check), or as much of it as they record."""
    config = next(iter(first.values()), {}).get("config") or {}
    flavor = (config.get("model") or {}).get("flavor")
    t = config.get("training") or {}
    steps, seq, batch = t.get("steps"), t.get("seq_len"), t.get("global_batch_size")
    parts = [f"flavor {flavor}"] if flavor else []
    if isinstance(steps, int):
        tokens = (
            f" of {batch * seq:,} tokens"
            if isinstance(batch, int) and batch > 0 and isinstance(seq, int)
            else ""
        )
        parts.append(f"{steps:,} steps{tokens}")
    return ", ".join(parts)


NO_POWER = (
    "the difference this sweep detects with 80% power cannot be estimated from its runs (the "
    "plan's variance rule reads the other arms' pooled residual variance, which is 0 here: they "
    "differ from one another by the same amount on every seed), so an absence is not shown"
)
"""What the answer says of a comparison that was tested though the sweep's power cannot be
estimated (detectable_here is None: baseline_apart with the other arms' residual variance 0 and
the baseline's not): never "no difference found"."""


def underpowered(name: str, d: float | None) -> float | None:
    """The effect of interest a comparison with no claim could have missed, where the sweep's
    80%-power detectable difference `d` is above it; else None. The rule: "no difference found"
    is said only where the sweep would have found the effect of interest with 80% power (d at
    most EFFECTS[name], the difference `python -m prefix_titan.power` plans seeds for: 0.05 on
    the char composite, 0.01 on bits/byte, val CE and the tasks); above it, a difference of
    that size is found with less than 80% power, its absence not shown, and the report says it
    cannot tell. A metric without an effect of interest is underpowered only where d is beyond
    the widest difference its values can have (the effect returned is then that width)."""
    if d is None:
        return None
    effect = EFFECTS.get(name)
    if effect is not None:
        return effect if d > effect else None
    return beyond_widest(name, d)


def _costs(result: Analysis, arms: list[str]) -> str:
    """What the arms claimed on the first family cost, or gain, on each other family's primary:
    the question asks at what cost. A claim there, or no difference found with the difference
    the sweep detects; validation CE with the part its target costs by construction; and what
    the families' alphas add up to (each holds its own: the chance of a false claim somewhere
    over F families is up to F times it)."""
    plan = result.plan
    out = []
    for arm in arms:
        said = []
        for family in plan.families[1:]:
            c = next((c for c in result.primary_comparisons(family.name) if c.arm == arm), None)
            if c is None:
                gone = diverged(result, family.primary, arm)
                base = diverged(result, family.primary, plan.baseline)
                said.append(
                    f"{family.primary} not compared"
                    + (f": {gone}" if gone else f": {plan.baseline}'s {base}" if base else "")
                )
                continue
            ci = _estimated(c) if c.low is not None else ""
            if c.claimed:
                text = f"{family.primary} {c.direction} ({ci})"
            elif c.p is None:
                text = f"{family.primary} not tested (the same difference on every seed)"
            else:
                compared = len({k.arm for k in result.primary_comparisons(family.name)})
                d = detectable_here(result, family.primary, compared)
                effect = underpowered(family.primary, d)
                if d is None:  # tested, but no power to state: not "no difference found"
                    text = f"{family.primary}: cannot tell ({ci}; {NO_POWER})"
                elif effect is None:
                    text = f"{family.primary}: no difference found ({ci}" + (
                        f"; detectable {detectable_text(family.primary, d)})" if d else ")"
                    )
                else:  # (a cost the sweep could not have seen: not "no difference found")
                    text = (
                        f"{family.primary}: cannot tell, underpowered ({ci}; detectable "
                        f"{detectable_text(family.primary, d)}, above the {effect:g} of interest)"
                    )
            built = by_construction(result, family.primary, arm)
            if built is not None:
                text += f" (the targets alone imply {_fmt(built)})"
            said.append(text)
        if said:
            out.append(f"{arm}: {'; '.join(said)}")
    if not out:
        return ""
    f = len(plan.families)
    return (
        f" At what cost: {' | '.join(out)}. Each family is tested at familywise alpha "
        f"{plan.alpha} on its own: over the plan's {f} families, the chance of a false claim somewhere is up "
        f"to {f * plan.alpha:.3g}."
    )


def by_construction(result: Analysis, name: str, arm: str) -> float | None:
    """The part of arm - baseline on a validation CE metric that the targets imply (the plain CE
    a perfect target-matcher has), from the runs' final rows; None elsewhere."""
    if name not in BY_CONSTRUCTION:
        return None
    implied = result.final.get("implied CE") or {}
    a, b = implied.get(arm), implied.get(result.plan.baseline)
    if not a or not b:
        return None
    return float(np.mean(list(a.values())) - np.mean(list(b.values())))


def _words_unread(result: Analysis) -> str:
    """Words for the answer where its primary is read from the character probes that are not
    prefix-shaped (char acc - blank's) and no arm compared on it, nor the baseline, is shown to
    read the word in them (`_unread`): whatever the answer says of a difference, the probes
    scored as without the word (a smoke sweep's, as a rule), which the notes alone said."""
    family = result.plan.families[0]
    arms = {c.arm for c in result.primary_comparisons(family.name)}
    if family.primary not in ("char composite", "char acc", *CHAR_PROBES) or not arms:
        return ""  # (char acc - blank reads these probes: not the prefix-shaped ones)
    arms.add(result.plan.baseline)
    zero, around = _unread(result)
    if not arms <= {*zero, *around}:
        return ""
    if arms <= set(zero):
        return (
            " In every run the character probes scored as their blank twins (the word blanked; "
            "chance by construction): char acc - blank is 0, so they show no reading of the word "
            "in any arm (see the notes)."
        )
    return (
        " Reading the word is not shown to add to any arm's character probes (char acc - "
        "blank's interval over seeds covers 0 for each): they may show no reading of the word "
        "(see the notes)."
    )


def _answer(result: Analysis, contrast: list[str]) -> str:
    plan = result.plan
    family = plan.families[0]
    primary = result.primary_comparisons(family.name)
    compared = {c.arm for c in primary}
    if not contrast:
        return (
            f"No claim: the sweep has no arm of the plan's contrast ({', '.join(plan.contrast)}; "
            f"a kind is an arm's name without its {plan.axis} part), so nothing was compared "
            "(see the notes)."
        )
    if not compared and family.primary in result.unaligned:
        return (
            f"No claim: {family.primary} is left out, the runs having it at different steps, so "
            "nothing was compared (the notes name the runs and what to do)."
        )
    if not compared and family.primary in result.table_apart:
        why = OWN_TABLE_WHY.format(
            name=family.primary,
            baseline=plan.baseline,
            arms=", ".join(result.table_apart[family.primary]),
        )
        return f"No claim: {why}. So nothing was compared (see the notes)."
    if not compared:
        return (
            f"No claim: {family.primary} is not measured on every seed of {plan.baseline} and "
            f"another arm, so nothing was compared (see the notes)."
        )
    if len(result.seeds) > 1 and all(c.p is None for c in primary):
        return (
            f"No claim: on {family.primary} every arm compared differs from {plan.baseline} by "
            "the same amount on every seed (no residual variance), so no difference could be "
            "tested (see the notes)."
        )
    claims = [c for c in primary if c.claimed]  # the final step alone is never claimed
    untested = [c.arm for c in primary if c.p is None]  # (some: all of them is said above)
    not_tested = (
        f" Not tested, the same difference from {plan.baseline} on every seed (no variance): "
        f"{', '.join(untested)}."
        if untested
        else ""
    )
    better = [c for c in claims if c.direction == "better"]
    worse = [c for c in claims if c.direction == "worse"]
    apart = result.table_apart.get(family.primary, [])
    gone = {
        a: w for a in contrast if a not in compared and (w := diverged(result, family.primary, a))
    }
    not_finite = "; ".join(f"{a}, {w}" for a, w in gone.items())
    not_tested += (
        f" Not compared on {family.primary}, a value not finite: {not_finite}."
        if gone and (better or worse)
        else ""
    )
    not_tested += (
        f" Not compared, trained towards another target table than {plan.baseline}'s (on which "
        f"each run measures {family.primary}): {', '.join(apart)}."
        if apart and (better or worse)
        else ""
    )

    def listed(cs):
        return "; ".join(f"{c.arm} ({_estimated(c)}, adj. p = {c.p_adjusted:.3g})" for c in cs)

    def calibrated(c) -> str:  # the claim's comparison with each item calibrated by its twin
        t = _read_comparison(result, READ[c.metric], c) if c.metric in READ else None
        if t is None:
            return ""
        band = "" if t.low is None else f" [{_fmt(t.low)}, {_fmt(t.high)}]"
        return f"; calibrated {_fmt(t.estimate)}{band}"

    if better:
        # A claim its items calibrated by their blank twins do not leave standing (prior_only)
        # stays a claim of the plan's test (the error rates count it), but is not a "Yes": the
        # answer names it apart, with its calibrated difference, as a change of prior.
        prior = [c for c in better if c.prior_only]
        known = [c for c in better if not c.prior_only]
        level = (
            "; intervals "
            + ("nominal " if apart_here(result, family.primary) is not None else "")
            + "95%, unadjusted"
        )
        where = f"at this sweep's scale ({result.scope})" if result.scope else "in this sweep"
        shifted = "; ".join(
            f"{c.arm} ({_estimated(c)}, adj. p = {c.p_adjusted:.3g}{calibrated(c)})" for c in prior
        )
        if not known:
            answer = (
                f"Claimed on {family.primary}, but not shown to be character knowledge: "
                f"{shifted} better than {plan.baseline} at familywise alpha {plan.alpha} "
                f"({len(prior)} of the {len(compared)} arms compared{level}), and not once each "
                "probe item is calibrated by its blank twin (the same item, the word blanked): "
                "the gain cannot be told from a change of the models' prior over the choices "
                "(see the notes)."
            )
        else:
            answer = (
                f"Yes, on {family.primary}: {listed(known)} better than {plan.baseline}, at "
                f"familywise alpha {plan.alpha} ({len(known)} of the {len(compared)} arms "
                f"compared{level}). Shown {where} and on these items, not beyond."
            )
            if prior:
                answer += (
                    f" Claimed too, but not a gain of knowledge: {shifted}; "
                    f"{'its' if len(prior) == 1 else 'their'} gain is not there once each probe "
                    "item is calibrated by its blank twin, so it cannot be told from a change of "
                    "prior (see the notes)."
                )
        if worse:
            answer += f" Worse: {listed(worse)}."
        return answer + not_tested + _costs(result, [c.arm for c in better])
    d = detectable_here(result, family.primary, len(compared))
    effect = underpowered(family.primary, d)
    if worse:
        rest = len(compared) - len(worse) - len(untested)
        power = (
            f" (this sweep detects an estimated {detectable_text(family.primary, d, '.2g')} with "
            "80% power" + ("" if effect is None else f", above the {effect:g} of interest") + ")"
            if d
            else f" ({NO_POWER})"
        )
        found = (
            "cannot tell"
            if d is None
            else "no difference found"
            if effect is None
            else "cannot tell, underpowered"
        )
        others = (
            f" The other {rest} {'arm' if rest == 1 else 'arms'} compared: {found}{power}."
            if rest
            else ""
        )
        return (
            f"No arm was shown to be better than {plan.baseline} on {family.primary}; worse: "
            f"{listed(worse)}, "
            f"at familywise alpha {plan.alpha}.{others}{not_tested}"
        )
    tail = (
        " (the difference this sweep detects with 80% power, as estimated from its runs: "
        f"{detectable_text(family.primary, d, '.2g')})"
        if d
        else ""
    )
    unmeasured = [a for a in contrast if a not in compared and a not in apart and a not in gone]
    left = (
        (
            f"; not compared, {family.primary} not measured on every seed: {', '.join(unmeasured)}"
            if unmeasured
            else ""
        )
        + (f"; not compared, a value not finite: {not_finite}" if gone else "")
        + (
            f"; not compared, trained towards another target table than {plan.baseline}'s (on which "
            f"each run measures {family.primary}): {', '.join(apart)}"
            if apart
            else ""
        )
    )
    kinds = [k for k in plan.contrast if any(result.kinds.get(a) == k for a in compared)]
    if untested:
        which = f"tested ({len(compared) - len(untested)} of the {len(compared)} compared)"
    elif unmeasured or apart or gone:
        which = "compared"
    elif result.kinds.get(plan.baseline) in kinds:  # arms along another axis than the kind's
        which = f"compared ({', '.join(a for a in result.arms if a in compared)})"
    else:
        which = f"of {', '.join(kinds)}"
    if d is None:  # tested, but the sweep's power cannot be stated: not "no difference found"
        return (
            f"Cannot tell: no arm {which} was shown to differ from {plan.baseline} on "
            f"{family.primary} at familywise alpha {plan.alpha}, but {NO_POWER}{left}."
            f"{not_tested}"
        )
    if effect is not None:  # (d is not None)
        return (
            f"Cannot tell (underpowered): no arm {which} was shown to differ from "
            f"{plan.baseline} on {family.primary} at familywise alpha {plan.alpha}, but this "
            "sweep detects with 80% power, as estimated from its runs, only "
            f"{detectable_text(family.primary, d, '.2g')}, above the {effect:g} taken as the "
            "effect of interest (`python -m prefix_titan.power`'s): a difference of that size "
            f"is found with less than 80% power, so its absence is not shown{left} "
            "(`python -m prefix_titan.power --from` this sweep gives the seeds it needs)."
            f"{not_tested}"
        )
    return (
        f"No difference found: no arm {which} was shown to differ from {plan.baseline} "
        f"on {family.primary} at familywise alpha {plan.alpha}{tail}{left}.{not_tested}"
    )
