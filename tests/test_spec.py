"""ObjectiveSpec answers its own questions: the table key, the arm name, the shared execution
settings. A dummy field added to the spec is followed, without any other edit, by the key, the
name, the sweep's configs, the report's grouping and invariants, and the inspect CLI."""

import argparse
import dataclasses
import re
import tomllib

import pytest
from helpers import ROOT, make_run

from prefix_titan.objectives import ObjectiveSpec
from prefix_titan.objectives.spec import EXECUTION, TARGET, WEIGHTING, option
from prefix_titan.sweep import runs
from prefix_titan.sweep.configs import arm_specs, arms, render
from prefix_titan.targets import add_target_options


@dataclasses.dataclass
class SpecWithDummy(ObjectiveSpec):
    dummy: int = option(3, TARGET)
    """a target option no version of the package has"""


@dataclasses.dataclass
class SpecWithExecutionDummy(ObjectiveSpec):
    dummy_impl: str = option("a", EXECUTION)
    """an execution setting no version of the package has"""


def test_the_roles_of_the_fields():
    assert [f.name for f in ObjectiveSpec.fields_of(TARGET)] == [
        "name",
        "tau",
        "normalize",
        "support",
        "epsilon",
        "options",
    ]
    assert [f.name for f in ObjectiveSpec.fields_of(WEIGHTING)] == [
        "position_gamma",
        "position_start",
    ]
    assert ObjectiveSpec.execution_fields() == (
        "fused_loss",
        "fused_chunk_tokens",
        "kernel",
        "row_block_mib",
    )
    every = {f.name for f in dataclasses.fields(ObjectiveSpec)}
    assert every == {f.name for f in ObjectiveSpec.fields_of(TARGET, WEIGHTING, EXECUTION)}


@pytest.mark.parametrize(
    "spec,name",
    [
        (ObjectiveSpec("ce"), "ce"),
        (ObjectiveSpec("ce", tau=2.0, epsilon=0.3), "ce"),  # options ce does not read
        (ObjectiveSpec("label_smoothing"), "label_smoothing"),
        (ObjectiveSpec("label_smoothing", epsilon=0.2), "label_smoothing_epsilon0.2"),
        (ObjectiveSpec("prefix"), "prefix_tau0.5"),
        (ObjectiveSpec("prefix", tau=0.05, normalize=True), "prefix_norm_tau0.05"),
        (
            ObjectiveSpec("prefix", tau=2.0, normalize=True, support="vocab"),
            "prefix_norm_tau2.0_vocab",
        ),
        (ObjectiveSpec("prefix", position_gamma=0.9), "prefix_tau0.5_gamma0.9"),
        (ObjectiveSpec("prefix", fused_loss=True, kernel="triton"), "prefix_tau0.5"),
        (ObjectiveSpec("my_lab.targets:suffix", epsilon=0.2), "my_lab.targets:suffix_epsilon0.2"),
        (  # a family's own options, by key: one name for any order or spacing
            ObjectiveSpec("my_lab.targets:suffix", options=" strict=false, min_len=2,ab=x.y"),
            "my_lab.targets:suffix_abx.y_min_len2_no_strict",
        ),
    ],
    ids=str,
)
def test_arm_names(spec, name):
    assert spec.arm_name() == name


def test_the_table_key_holds_the_target_settings_only():
    a = ObjectiveSpec("prefix", tau=0.5)
    assert a.target_key() == ObjectiveSpec("prefix", tau=0.5, position_gamma=0.9).target_key()
    assert a.target_key() == ObjectiveSpec("prefix", fused_loss=True, kernel="triton").target_key()
    assert a.target_key() != ObjectiveSpec("prefix", tau=0.2).target_key()
    assert a.target_key() != ObjectiveSpec("prefix", support="vocab").target_key()


def test_the_sweeps_arms_are_named_by_the_spec():
    names = list(arms())
    assert names[:3] == ["ce", "label_smoothing", "prefix_tau0.05"]
    assert len(names) == len(arm_specs()) == 14  # no two objectives share a name
    assert all(spec.arm_name() == name for name, spec in arms().items())


def test_records_of_older_and_newer_versions():
    """A record without a setting takes its default; one with an unknown setting is refused."""
    spec = ObjectiveSpec.from_record({"name": "prefix", "tau": 0.2})
    assert spec.arm_name() == "prefix_tau0.2" and spec.kernel == "auto"
    with pytest.raises(
        ValueError, match="run_config.json has objective settings .* not know: zeta"
    ):
        ObjectiveSpec.from_record({"name": "ce", "zeta": 1}, "run_config.json")


def test_a_new_target_field_reaches_key_name_configs_and_cli():
    spec = SpecWithDummy("prefix", dummy=5)
    # the table key: two values, two tables
    assert ("dummy", 5) in spec.target_key()
    assert spec.target_key() != SpecWithDummy("prefix").target_key()
    # the arm name: shown when set away from its default
    assert SpecWithDummy("prefix").arm_name() == "prefix_tau0.5"
    assert spec.arm_name() == "prefix_tau0.5_dummy5"
    # the sweep's config: in [objective], and the arm's own folder
    text = render(spec, "smoke")
    assert "\ndummy = 5\n" in text.split("\n[objective]\n")[1].split("\n[")[0]
    assert 'dump_folder = "./outputs/smoke/prefix_tau0.5_dummy5"' in text
    # the inspect CLI offers it
    parser = argparse.ArgumentParser()
    names = add_target_options(parser, SpecWithDummy)
    assert "dummy" in names and parser.parse_args(["--dummy", "7"]).dummy == 7


def test_an_import_path_arm_is_filed_without_its_colon():
    from prefix_titan.sweep.configs import config_path

    spec = ObjectiveSpec("prefix_titan.objectives.families:ce_targets")
    assert spec.arm_name() == "prefix_titan.objectives.families:ce_targets"  # the report's name
    folder = "./outputs/smoke/prefix_titan.objectives.families-ce_targets"
    assert f'dump_folder = "{folder}"' in render(spec, "smoke")
    path = config_path(ROOT, "smoke", spec.arm_name())
    assert path.name == "prefix_titan.objectives.families-ce_targets.toml"


def test_a_generated_config_holds_the_settings_its_family_reads(monkeypatch):
    """[objective] of a generated config names what the arm's family reads: `ce` its name alone,
    `label_smoothing` epsilon, `prefix` tau, normalize and support; a family of one's own that
    says it reads epsilon, epsilon; one that does not say, every shared setting."""
    import sys

    module = type(sys)("cfg_lab")
    module.eps = lambda texts, spec: None
    module.eps.reads = ("epsilon",)
    module.any = lambda texts, spec: None
    monkeypatch.setitem(sys.modules, "cfg_lab", module)

    def section(spec):
        text = render(spec, "smoke").split("\n[objective]\n")[1].split("\n[")[0]
        return [line.split(" = ")[0] for line in text.strip().splitlines()]

    assert section(ObjectiveSpec("ce")) == ["name"]
    assert section(ObjectiveSpec("label_smoothing", epsilon=0.2)) == ["name", "epsilon"]
    assert section(ObjectiveSpec("prefix", tau=2.0)) == ["name", "tau", "normalize", "support"]
    assert section(ObjectiveSpec("cfg_lab:eps")) == ["name", "epsilon"]
    every = ["name", "tau", "normalize", "support", "epsilon"]
    assert section(ObjectiveSpec("cfg_lab:any")) == every
    with_gamma = ObjectiveSpec("ce", position_gamma=0.99)
    assert section(with_gamma) == ["name", "position_gamma"]
    # a config read back makes the arm it was written for
    for spec in (ObjectiveSpec("ce"), ObjectiveSpec("cfg_lab:eps", epsilon=0.3), with_gamma):
        text = render(spec, "smoke")
        record = tomllib.loads(text)["objective"]
        assert ObjectiveSpec.from_record(record).arm_name() == spec.arm_name()


def test_the_report_groups_and_checks_by_the_spec(tmp_path, monkeypatch):
    """Two runs differing only in the new target field are two arms (not 'two runs of one arm');
    a new execution field that differs between arms is named by the invariants check."""
    make_run(tmp_path, "a", {"name": "prefix", "dummy": 3}, 0.0)
    make_run(tmp_path, "b", {"name": "prefix", "dummy": 5}, 0.0)
    monkeypatch.setattr(runs, "ObjectiveSpec", SpecWithDummy)
    found = runs.find_runs(str(tmp_path))
    assert sorted(runs.group_arms(found)) == ["prefix_tau0.5", "prefix_tau0.5_dummy5"]
    assert runs.invariant_violations(found) == []  # an objective setting may differ

    monkeypatch.setattr(runs, "ObjectiveSpec", ObjectiveSpec)
    with pytest.raises(ValueError, match="objective settings this version .* not know: dummy"):
        runs.find_runs(str(tmp_path))

    other = tmp_path / "execution"
    make_run(other, "c", {"name": "ce", "dummy_impl": "a"}, 0.0)
    make_run(other, "d", {"name": "label_smoothing", "dummy_impl": "b"}, 0.0)
    monkeypatch.setattr(runs, "ObjectiveSpec", SpecWithExecutionDummy)
    found = runs.find_runs(str(other))
    problems = runs.invariant_violations(found)
    assert len(problems) == 1 and problems[0].startswith("`objective.dummy_impl` differs"), problems


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"row_block_mib": 0}, "objective.row_block_mib must be an integer >= 1"),
        ({"row_block_mib": 2.5}, "objective.row_block_mib must be an integer >= 1"),
        ({"row_block_mib": True}, "objective.row_block_mib must be an integer >= 1"),
        (
            {"row_block_mib": 8, "kernel": "triton"},
            "objective.kernel is 'triton' (one kernel per row, no block)",
        ),
    ],
    ids=str,
)
def test_the_row_block_refuses_what_it_cannot_size(settings, message):
    with pytest.raises(ValueError) as e:
        ObjectiveSpec("ce", **settings).validate()
    assert message in str(e.value)


def test_two_objectives_with_one_arm_name_are_refused(monkeypatch):
    """A family whose options are not labelled for it (tau's families= names prefix only) would
    give its arms one name, and one config would silently hold the last of them."""
    from prefix_titan.sweep import configs

    specs = [ObjectiveSpec("ce"), ObjectiveSpec("label_smoothing", epsilon=0.1)]
    monkeypatch.setattr(configs, "arm_specs", lambda: [*specs, ObjectiveSpec("label_smoothing")])
    with pytest.raises(ValueError, match="two arms 'label_smoothing': the same objective"):
        configs.arms()
    twins = [ObjectiveSpec("my.mod:f", tau=0.2), ObjectiveSpec("my.mod:f", tau=0.2, epsilon=0.3)]
    monkeypatch.setattr(configs, "arm_specs", lambda: twins)
    assert len(configs.arms()) == 2  # a family by import path shows every setting it is given
    monkeypatch.setattr(ObjectiveSpec, "arm_name", lambda self: self.name)
    monkeypatch.setattr(configs, "arm_specs", lambda: twins)
    with pytest.raises(ValueError, match="differ in epsilon, and their names' parts coincide"):
        configs.arms()
    smoothed = [*specs, ObjectiveSpec("label_smoothing", epsilon=0.2)]
    monkeypatch.setattr(configs, "arm_specs", lambda: smoothed)
    with pytest.raises(ValueError, match="differ in epsilon, which the arm name leaves out"):
        configs.arms()


def test_a_setting_the_family_does_not_read_is_refused():
    with pytest.raises(
        ValueError,
        match=r"'prefix' does not read objective.epsilon = 0.5 \(read by label_smoothing\)",
    ):
        ObjectiveSpec("prefix", epsilon=0.5).validate()
    with pytest.raises(ValueError, match="'ce' does not read objective.tau = 0.2") as e:
        ObjectiveSpec("ce", tau=0.2).validate()
    assert str(e.value).endswith(
        ": leave it at its default (or unset), or name the family that reads it"
    )
    with pytest.raises(ValueError, match="; objective.epsilon = 0.5 .*: leave them at their"):
        ObjectiveSpec("ce", tau=0.2, epsilon=0.5).validate()
    ObjectiveSpec("prefix", epsilon=0.1, tau=0.2).validate()  # at the default: fine
    ObjectiveSpec("my.mod:f", epsilon=0.5, tau=0.2).validate()  # import path: reads any


@pytest.mark.parametrize(
    "options,message",
    [
        ("min_len", 'objective.options must be "key=value,key=value"'),
        ("min len=2", "('min len=2')"),
        ("a=1,a=2", "objective.options sets a twice"),
        ("a=x/y", "a value a number, true, false or a word"),
        (3, "got 3"),
    ],
)
def test_malformed_family_options_are_refused_naming_the_form(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ObjectiveSpec("my_lab.targets:suffix", options=options).validate()


def test_family_options_are_typed_and_refused_for_the_built_in_families():
    spec = ObjectiveSpec("my_lab.targets:suffix", options="n=2,x=0.5,e=1e-3,on=true,w=abc,f=nan")
    assert spec.validate().family_options() == {
        "n": 2,
        "x": 0.5,
        "e": 0.001,
        "on": True,
        "w": "abc",
        "f": "nan",
    }
    assert ObjectiveSpec("my_lab.targets:suffix").family_options() == {}
    for name, its in (
        ("ce", "it has no settings"),
        ("prefix", "its settings: objective.tau, objective.normalize, objective.support"),
        ("label_smoothing", "its settings: objective.epsilon"),
    ):
        with pytest.raises(ValueError, match=re.escape(f"'{name}' reads none ({its})")):
            ObjectiveSpec(name, options="n=2").validate()


def test_an_integer_setting_names_the_arm_its_float_names():
    """A TOML's `tau = 1` (an integer) is the objective `tau = 1.0` is: one arm name, one record,
    whether validated or read back from a run's record; a tau too small to score is refused by
    name."""
    for ints, floats in (
        ({"tau": 1, "normalize": True}, {"tau": 1.0, "normalize": True}),
        ({"tau": 2, "position_gamma": 1}, {"tau": 2.0, "position_gamma": 1.0}),
        ({"name": "label_smoothing", "epsilon": 0}, {"name": "label_smoothing", "epsilon": 0.0}),
    ):
        ints, floats = {"name": "prefix", **ints}, {"name": "prefix", **floats}
        a, b = ObjectiveSpec(**ints).validate(), ObjectiveSpec(**floats).validate()
        assert a.arm_name() == b.arm_name() and a.objective() == b.objective(), (ints, a)
        assert ObjectiveSpec.from_record(ints).arm_name() == b.arm_name()
    assert ObjectiveSpec("prefix", tau=1).arm_name() == "prefix_tau1.0"  # validated or not
    for tau in (1e-308, 1e-4, 0):
        with pytest.raises(ValueError, match=r"objective.tau must be a finite number >= 0.001"):
            ObjectiveSpec("prefix", tau=tau).validate()


def test_the_report_compares_the_kernel_and_chunk_as_each_run_resolved_them():
    """Arms whose kernel settings differ ('pytorch', 'auto') but ran the same rows are alike;
    arms that ran other rows, or other chunks, are named."""
    from prefix_titan.objectives.plan import recorded_execution
    from prefix_titan.runs.folder import RESOLVED

    def run(name, seed, kernel, resolved=None):
        config = {"objective": {"name": "ce", "kernel": kernel}, "debug": {"seed": seed}}
        if resolved is not None:
            config[RESOLVED] = resolved
        return {"name": name, "seed": seed, "config": config}

    cpu = {"kernel": "pytorch", "fused_chunk_tokens": None}
    gpu = {"kernel": "triton", "fused_chunk_tokens": None}
    alike = [run("ce", 1, "pytorch"), run("ce", 2, "auto", cpu), run("ce", 3, "pytorch", cpu)]
    assert runs.invariant_violations(alike) == []
    (problem,) = runs.invariant_violations(
        [run("ce", 1, "auto", cpu), *alike[1:], run("ce", 4, "auto", gpu)]
    )
    assert problem.startswith("`objective.kernel` differs from 'pytorch' in: ce seed 4 ('triton')")
    # a record from before records kept RESOLVED: what its settings meant then
    old_fused = {"kernel": "pytorch", "fused_loss": True, "fused_chunk_tokens": None}
    assert recorded_execution(old_fused, None, "cuda", 1024) == {
        "kernel": "pytorch",
        "fused_chunk_tokens": 2048,
    }
    assert recorded_execution(old_fused, None, "cpu", 1024)["fused_chunk_tokens"] == 512
    assert recorded_execution({"fused_loss": True}, None)["kernel"] == "pytorch"
    assert recorded_execution({"kernel": "auto"}, None, "cuda", 64)["kernel"] == "triton"
    assert recorded_execution({"kernel": "auto"}, gpu, "cpu", 64) == gpu


def test_the_report_names_runs_that_read_other_files_not_runs_recorded_before_the_files():
    from prefix_titan.runs.folder import DATA_FILES

    def run(name, seed, files):
        config = {"objective": {"name": "ce"}, "debug": {"seed": seed}}
        return {"name": name, "seed": seed, "config": {**config, **files}}

    a = {DATA_FILES: {"tokenizer.json": "a" * 64}}
    b = {DATA_FILES: {"tokenizer.json": "b" * 64}}
    assert runs.invariant_violations([run("ce", 1, a), run("ce", 2, {}), run("ce", 3, a)]) == []
    (problem,) = runs.invariant_violations([run("ce", 1, a), run("ce", 2, b), run("ce", 3, a)])
    assert (
        problem.startswith(f"`{DATA_FILES}.tokenizer.json` differs from ")
        and "ce seed 2" in problem
    )
    # the folder holding the files the runs hashed is told apart by them, not by its name
    here, moved = ({"model": {"hf_assets_path": p}} for p in ("./tok", "/fast/copy/tok"))
    assert (
        runs.invariant_violations([run("ce", 1, {**a, **here}), run("ce", 2, {**a, **moved})]) == []
    )
    (problem,) = runs.invariant_violations(
        [run("ce", 1, {**a, **here}), run("ce", 2, {**b, **moved})]
    )
    assert problem.startswith(f"`{DATA_FILES}.tokenizer.json` differs from ")
    # a run that recorded no files: its folder's name is all there is to compare
    (problem,) = runs.invariant_violations([run("ce", 1, here), run("ce", 2, moved)])
    assert problem.startswith("`model.hf_assets_path` differs from ")


def test_an_arm_whose_runs_trained_towards_different_tables_is_named():
    """The target table's digest is the arm's own (arms differ in it; it is no invariant across
    arms), but within one arm every run must have trained towards the same table."""
    from prefix_titan.runs.folder import TARGET_TABLE

    def run(name, seed, sha):
        config = {"objective": {"name": name}, "debug": {"seed": seed}}
        if sha is not None:
            config[TARGET_TABLE] = sha * 64
        return {"name": name, "seed": seed, "config": config}

    alike = [run("ce", 1, "a"), run("ce", 2, "a"), run("prefix", 1, "b"), run("prefix", 2, "b")]
    assert runs.invariant_violations(alike) == []
    assert runs.invariant_violations([*alike, run("prefix", 3, None)]) == []  # (not recorded)
    (problem,) = runs.invariant_violations([*alike, run("prefix", 3, "c")])
    assert problem == (
        "arm prefix trained towards 2 different target tables under its settings (its family's "
        "code, or this package's, changed between its runs): seed 1, seed 2: sha256 "
        f"{'b' * 12}...; seed 3: sha256 {'c' * 12}..."
    )


def test_every_bad_setting_is_refused_at_once_each_in_its_own_words():
    """Two settings out of range: one refusal naming both, each message as it reads alone; a
    setting the family does not read is refused only once the values are in range."""
    alone = {}
    for field, value in (("tau", 0.0), ("epsilon", -0.1), ("kernel", "cuda")):
        with pytest.raises(ValueError) as e:
            ObjectiveSpec("label_smoothing", **{field: value}).validate()
        alone[field] = str(e.value)
    with pytest.raises(ValueError) as e:
        ObjectiveSpec("label_smoothing", tau=0.0, epsilon=-0.1, kernel="cuda").validate()
    assert str(e.value) == "; ".join([alone["tau"], alone["epsilon"], alone["kernel"]])
    assert "does not read" not in str(e.value)
    with pytest.raises(ValueError, match=r"^objective.name = 'label_smoothing' does not read"):
        ObjectiveSpec("label_smoothing", tau=0.2).validate()


@pytest.mark.parametrize(
    "name,prefix_words", [("prefix", True), ("my_lab.targets:f", False), ("ce", False)]
)
def test_the_tau_refusal_speaks_of_prefix_targets_only_for_prefix(name, prefix_words):
    with pytest.raises(ValueError) as e:
        ObjectiveSpec(name, tau=0.0).validate()
    message = str(e.value)
    assert message.startswith("objective.tau must be a finite number >= 0.001 ("), message
    assert message.endswith("; got 0.0"), message
    assert ("every prefix target is the gold alone" in message) is prefix_words, message


def test_the_name_help_lists_the_built_in_families():
    """The `--objective.name` help is ObjectiveSpec.name's docstring, written by hand: it lists
    the built-in families (objectives.FAMILIES), in their order."""
    from prefix_titan.objectives import FAMILIES

    source = (ROOT / "prefix_titan" / "objectives" / "spec.py").read_text()
    listed = re.search(r'"""Target family: (.*?) \| an import path', source).group(1)
    assert listed.split(" | ") == list(FAMILIES), listed
