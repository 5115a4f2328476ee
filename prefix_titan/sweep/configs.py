"""The sweep's arms and scales, and the configs generated from them: one TOML per arm and scale.

Arms (`arms()`): ce, label_smoothing, and prefix for every tau of the sweep, unnormalized and
normalized, then the arms of the project's own `sweep_arms.toml` (ARMS_FILE) where it has one;
each is an ObjectiveSpec, named by `ObjectiveSpec.arm_name()`. Within a scale the
arms differ only in [objective] (the spec's objective settings) and job.dump_folder. Scales
(SCALES): 500M (bases/500M.toml -> train_configs/), pilot (bases/pilot.toml ->
train_configs/pilot/) and smoke (bases/smoke.toml -> train_configs/smoke/).

    python -m prefix_titan.sweep configs            # (re)write the files
    python -m prefix_titan.sweep configs --check    # exit 1 if a committed file differs
"""

from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass

from ..objectives.spec import TARGET, TAU_SWEEP, WEIGHTING, ObjectiveSpec
from ..runs.folder import read_toml, write_atomically

BASES = pathlib.Path(__file__).resolve().parent / "bases"
"""The scales' base TOMLs (package data)"""


@dataclass(frozen=True)
class Scale:
    base: str
    """The base TOML's file name in BASES"""
    out: str
    """The folder of the generated configs, relative to the project root"""
    sweep: str
    """The sweep's output folder: each arm's runs go to <sweep>/<arm>/seed<S>/"""
    single: str
    """The configs' own dump folder, <single>/<arm>: a config run by itself (not launched by the
    sweep) trains there, outside the sweep's folder, whose runs it would otherwise join (a
    report reads every run under the sweep folder, and a launch compares with them)"""
    gpus_per_run: int | None
    """GPUs one run uses by default (None: all the node's GPUs, FSDP2 over them)"""
    validation_sequences: int
    """The validation set, in sequences (validation.steps x local batch x data-parallel ranks):
    `sweep launch` keeps it on any number of GPUs per run"""
    h100_tokens_per_s: float | None = None
    """Training tokens per second one H100 reached alone on this scale's shape (compiled; the
    H100 measurements of 2026-11-23 in docs/benchmarks.md), from which a --dry-run estimates
    the training cost; None: not measured"""
    cpu_run_seconds: float | None = None
    """Seconds one run of this scale took on a 2-core CPU VM with nothing beside it, from its
    launch to its last checkpoint (docs/cpu.md), from which a --dry-run on the CPU estimates the
    time; None: not measured"""


SCALES = {
    "500M": Scale(
        "500M.toml", "train_configs", "./outputs/sweep_500M", "./outputs/500M", None, 6400, 160_900
    ),
    "pilot": Scale(
        "pilot.toml",
        "train_configs/pilot",
        "./outputs/sweep_pilot",
        "./outputs/pilot",
        1,
        6400,
        566_800,
    ),
    "smoke": Scale(
        "smoke.toml",
        "train_configs/smoke",
        "./outputs/sweep_smoke",
        "./outputs/smoke",
        1,
        64,
        cpu_run_seconds=41,
    ),
}


def arm_specs() -> list[ObjectiveSpec]:
    """The sweep's objectives, baselines first, then the prefix arms in tau order."""
    specs = [ObjectiveSpec("ce"), ObjectiveSpec("label_smoothing")]
    for tau in TAU_SWEEP:
        specs.append(ObjectiveSpec("prefix", tau=tau))
        specs.append(ObjectiveSpec("prefix", tau=tau, normalize=True))
    return specs


ARMS_FILE = "sweep_arms.toml"
"""A project's own arms, in its root folder: one `[[arm]]` table of objective settings each"""


def user_arm_specs(root: pathlib.Path | str | None) -> list[ObjectiveSpec]:
    """The arms of `root`/sweep_arms.toml (none where there is no such file), each checked as
    a run would check it; a table that sets anything but the objective is refused."""
    import difflib

    from ..objectives.families import canonical_options, family_for

    path = pathlib.Path(root or ".") / ARMS_FILE
    if root is None or not path.is_file():
        return []
    data = read_toml(str(path), "the sweep's arms file")
    if not data:  # an empty file: no arms of the project's own
        return []
    tables = data.get("arm")
    if (
        set(data) != {"arm"}
        or not isinstance(tables, list)
        or not all(isinstance(t, dict) for t in tables)
    ):
        raise ValueError(
            f"{path}: write one [[arm]] table per arm (name = ..., its settings; [[arm]], not "
            f"[arm]); it holds {', '.join(sorted(data))}"
        )
    ours = [f.name for f in ObjectiveSpec.fields_of(TARGET, WEIGHTING)]
    every = [f.name for f in dataclasses.fields(ObjectiveSpec)]
    specs = []
    for i, table in enumerate(tables, 1):
        for key in table:
            if key in ours:
                continue
            if key in every:
                why = (
                    f"sets {key}, a setting every arm shares (it goes in the sweep's bases, or "
                    "after `--` at launch)"
                )
            else:
                close = difflib.get_close_matches(key, ours, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                why = f"sets {key}, which is no setting{hint}"
            raise ValueError(f"{path}: arm {i} {why}; an arm sets {', '.join(ours)}")
        if "name" not in table:
            raise ValueError(f"{path}: arm {i} has no name (ce, prefix, …, or module:function)")
        try:
            spec = ObjectiveSpec(**table).validate()
            family_for(spec)
            spec.options = canonical_options(spec)  # one arm name per objective
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: arm {i} ({table['name']}): {e}") from None
        specs.append(spec)
    return specs


def arms(root: pathlib.Path | str | None = None) -> dict[str, ObjectiveSpec]:
    """Arm name -> its objective, in launch order: the built-in arms (arm_specs), then, given
    the project `root`, those of its sweep_arms.toml. Two objectives with one name are refused
    (each arm's configs and runs are found by its name), every such clash named at once."""
    out: dict[str, ObjectiveSpec] = {}
    clashes = []
    built_in = arm_specs()
    built_in_names = {spec.arm_name() for spec in built_in}
    for i, spec in enumerate([*built_in, *user_arm_specs(root)]):
        name = spec.arm_name()
        if name in out:
            first, second = out[name].objective(), spec.objective()
            differ = sorted(k for k in {*first, *second} if first.get(k) != second.get(k))
            if not differ:
                why = "the same objective is listed twice" + (
                    f" (it is a built-in arm: leave it out of {ARMS_FILE})"
                    if name in built_in_names and i >= len(built_in)
                    else ""
                )
            elif spec.name in spec.built_in():
                why = (
                    f"their objectives differ in {', '.join(differ)}, which the arm name leaves "
                    f"out for family {spec.name!r}: add {spec.name!r} to that option's "
                    "families= in prefix_titan/objectives/spec.py"
                )
            else:
                why = (
                    f"their objectives differ in {', '.join(differ)}, and their names' parts "
                    "coincide: give one of them other option keys or values"
                )
            clashes.append(f"two arms {name!r}: {why}")
            continue
        out[name] = spec
    if len(clashes) == 1:
        raise ValueError(f"the sweep's arms name {clashes[0]}")
    if clashes:
        raise ValueError(
            f"the sweep's arms name {len(clashes)} arms twice:\n  " + "\n  ".join(clashes)
        )
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def override_flags(extra: list[str]) -> list[tuple[str, str]]:
    """(setting, flag as given) of each of the launch's overrides after `--`: `--training.steps
    20` or `--lr_scheduler.warmup-steps=2` name training.steps, lr_scheduler.warmup_steps (the
    parser takes either spelling), a boolean's negation its setting (`--validation.no-enable`:
    validation.enable; no setting's name begins with no_, which a test checks)."""
    out = []
    for x in extra:
        if x.startswith("--"):
            flag = x.split("=", 1)[0]
            section, _, name = flag[2:].replace("-", "_").rpartition(".")
            name = name.removeprefix("no_") if section else name
            out.append((f"{section}.{name}" if section else name, flag))
    return out


def file_name(arm: str) -> str:
    """An arm's name as a file or folder name: the `:` of an import-path family
    (`my_lab.targets:suffix`), which scp, PATH-like lists and some file systems read as a
    separator, becomes `-`, which no module path holds."""
    return arm.replace(":", "-")


def pick_arms(
    specs: dict[str, ObjectiveSpec], names: list[str], root: pathlib.Path | str | None = None
) -> dict[str, ObjectiveSpec]:
    """The arms `names` picks among `specs` (`arms(root)`), in the order named, each also by its
    file_name; a name of no arm is refused with the nearest arm's and where arms are added."""
    import difflib

    by_file = {file_name(arm): arm for arm in specs}  # the `-` form of an import path's `:`
    chosen = list(dict.fromkeys(by_file.get(arm, arm) for arm in names))
    unknown = [arm for arm in chosen if arm not in specs]
    if unknown:
        near = {u: difflib.get_close_matches(u, list(specs), n=1) for u in unknown}
        meant = [f"{u}: did you mean {m[0]}?" for u, m in near.items() if m]
        held = root is not None and (pathlib.Path(root) / ARMS_FILE).is_file()
        raise ValueError(
            f"--arms {' '.join(unknown)}: no such arm"
            + (f" ({'; '.join(meant)})" if meant else "")
            + f"; the arms are {', '.join(specs)} (add one as an [[arm]] of {ARMS_FILE} in the "
            "project folder" + (")" if held or root is None else f"; --root {root} holds none)")
        )
    return {arm: specs[arm] for arm in chosen}


def config_path(root: pathlib.Path, scale: str, arm: str) -> pathlib.Path:
    """Where the config of `arm` at `scale` is, under the project root."""
    return pathlib.Path(root) / SCALES[scale].out / f"{file_name(arm)}.toml"


def load_config(root: pathlib.Path, scale: str, arm: str) -> dict:
    return read_toml(str(config_path(root, scale, arm)), "a generated config")


GENERATED = "# Generated by `python -m prefix_titan.sweep configs`"
"""How every generated config begins"""


def render(spec: ObjectiveSpec, scale: str = "500M") -> str:
    """The config of one arm at one scale: the base with its [objective] section and dump
    folder filled in. The section holds the settings the arm's family reads: a shared one it
    does not read (families.family_reads: `epsilon` for `ce`) is left out, at its default."""
    from ..objectives.families import family_reads

    sc = SCALES[scale]
    reads = family_reads(spec.validate())
    unread = set() if reads is None else set(spec.shared()) - set(reads)
    section = "[objective]\n" + "".join(
        f"{k} = {_toml_value(v)}\n" for k, v in spec.objective().items() if k not in unread
    )
    header = f"{GENERATED} from prefix_titan/sweep/bases/{sc.base}: edit that, not this.\n"
    text = (BASES / sc.base).read_text().replace("{objective_section}\n", section)
    return header + text.replace("{dump_folder}", f"{sc.single}/{file_name(spec.arm_name())}")


def _generated_for_its_arm(path: pathlib.Path) -> bool:
    """The file is a config this command wrote: its generated header, and the name of the arm
    its [objective] makes (a copy under another name, edited or not, is the user's)."""
    text = path.read_text()
    if not text.startswith(GENERATED):
        return False
    try:
        objective = read_toml(str(path), "a generated config").get("objective", {})
        return path.stem == file_name(ObjectiveSpec.from_record(objective).arm_name())
    except (TypeError, ValueError):
        return False


def write_configs(root: pathlib.Path, check: bool = False) -> tuple[int, list[str], list[str]]:
    """Write every scale's configs under `root` (check: compare instead); returns (files
    written, files out of date, generated files that no arm makes any more: removed, or with
    check listed)."""
    stale, written, orphans = [], 0, []
    named = arms(root)
    for scale in SCALES:
        made = {config_path(root, scale, name) for name in named}
        folder = pathlib.Path(root) / SCALES[scale].out
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            if path not in made and _generated_for_its_arm(path):
                orphans.append(str(path.relative_to(root)))
                if not check:
                    path.unlink()
        for name, spec in named.items():
            path, text = config_path(root, scale, name), render(spec, scale)
            if check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path.relative_to(root)))
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(str(path), text)  # a cut write would still parse as TOML
                written += 1
    return written, stale, orphans
