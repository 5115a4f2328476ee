"""A family of one's own's settings (objective.options): where they go, how a word is read, how
they are shown, and where its module is looked for."""

import os
import re
import shlex
import sys
import tomllib

import pytest

from prefix_titan.objectives import ObjectiveSpec, canonical_options, family_options
from prefix_titan.objectives.families import resolve_family
from prefix_titan.objectives.spec import format_family_options, parse_family_options
from prefix_titan.train import check_config_file, own_setting_flags, unknown_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def twin_lab(monkeypatch):
    """A family declaring an int, a bool, a word and a setting without a type (None)."""
    module = type(sys)("twin_lab")
    module.twins = lambda texts, spec, *, min_len=1, case=False, mode="a", any_=None: None
    module.loose = lambda texts, spec, **kw: None
    monkeypatch.setitem(sys.modules, "twin_lab", module)
    return "twin_lab:twins"


def test_an_own_setting_under_objective_in_a_toml_is_told_to_go_in_options(twin_lab):
    data = {"objective": {"name": twin_lab, "options": "case=true", "min_len": 2}}
    assert unknown_names("t.toml", data) == (
        "t.toml: [objective] has no setting 'min_len'. twin_lab:twins declares min_len, a "
        'setting of its own: set it in options = "case=true,min_len=2". List every setting with '
        "`python -m prefix_titan.train --help`."
    )
    data = {"objective": {"name": twin_lab, "case": True, "mode": "1"}}  # no options yet
    message = unknown_names("t.toml", data)
    assert message.startswith("t.toml has 2 unknown names:")
    assert 'declares case, a setting of its own: set it in options = "case=true"' in message
    assert "declares mode, a setting of its own: set it in options = \"mode='1'\"" in message


@pytest.mark.parametrize(
    "name",
    [
        "twin_lab:loose",  # takes any key (**kwargs): declares none by name
        "twin_lab:no_such_function",
        "no_such_module_for_options:twins",  # does not import: its own refusal comes later
        "prefix",
    ],
)
def test_an_unknown_objective_setting_is_told_as_before_where_no_family_declares_it(twin_lab, name):
    message = unknown_names("t.toml", {"objective": {"name": name, "min_len": 2}})
    assert "declares" not in message
    assert "t.toml: [objective] has no setting 'min_len'. [objective] sets: name, tau," in message


def test_an_own_setting_as_a_flag_is_told_to_go_in_options(twin_lab):
    data = {"objective": {"name": twin_lab, "options": "case=true"}}
    assert own_setting_flags(["--objective.min_len", "2"], data) == (
        "--objective.min_len: [objective] has no setting 'min_len'. twin_lab:twins declares "
        "min_len, a setting of its own: set it in --objective.options case=true,min_len=2."
    )
    # the options and the name given as flags are the ones kept; `=` and `-` spellings
    args = ["--objective.options", "mode=b", "--objective.min-len=3"]
    assert own_setting_flags(args, data).endswith("set it in --objective.options mode=b,min_len=3.")
    # a quoted word, suggested as a flag, is quoted for the shell: pasted, it arrives as written
    args = ["--objective.options", "mode='1'", "--objective.min_len", "2"]
    said = own_setting_flags(args, data)
    suggested = said[said.index("--objective.options") : -1]
    assert shlex.split(suggested) == ["--objective.options", "mode='1',min_len=2"], said
    args = ["--objective.name", "prefix", "--objective.min_len", "2"]
    assert own_setting_flags(args, data) is None  # (the parser refuses it, as before)
    assert own_setting_flags(["--objective.tau", "0.3"], data) is None
    assert own_setting_flags(["--objective.zzz", "2"], data) is None


def test_check_config_file_refuses_an_own_setting_flag_before_the_parser(twin_lab, tmp_path):
    config = tmp_path / "twins.toml"
    base = open(os.path.join(ROOT, "train_configs", "embedded_default.toml")).read()
    config.write_text(base.replace('name = "prefix"', f'name = "{twin_lab}"', 1))
    assert check_config_file(["--job.config_file", str(config)]) is None
    problem = check_config_file(["--job.config_file", str(config), "--objective.case", "true"])
    assert problem == (
        "--objective.case: [objective] has no setting 'case'. twin_lab:twins declares case, a "
        "setting of its own: set it in --objective.options case=true."
    )


@pytest.mark.parametrize(
    "text, want",
    [
        ("mode=1", "1"),  # a str default: the word as written
        ("mode=1.50", "1.50"),
        ("mode=1e3", "1e3"),
        ("mode=true", "true"),
        ("mode=False", "False"),
        ("mode='1'", "1"),
        ('mode="true"', "true"),
        (" mode = 'b' ", "b"),
    ],
)
def test_a_word_setting_takes_the_value_as_written(twin_lab, text, want):
    assert family_options(ObjectiveSpec(twin_lab, options=text)) == {"mode": want}


def test_quotes_make_a_string_and_unquoted_words_keep_their_types(twin_lab):
    assert parse_family_options("a='1', b=\"true\", c=1, d=true, e=x") == {
        "a": "1",
        "b": "true",
        "c": 1,
        "d": True,
        "e": "x",
    }
    # a setting without a type (default None) takes either
    assert family_options(ObjectiveSpec(twin_lab, options="any_='2'")) == {"any_": "2"}
    assert family_options(ObjectiveSpec(twin_lab, options="any_=2")) == {"any_": 2}
    # a quoted word for a number is a string, refused as one
    with pytest.raises(ValueError) as e:
        family_options(ObjectiveSpec(twin_lab, options="min_len='2'"))
    assert str(e.value) == (
        "objective.options: min_len = '2' is of type str, and 'twin_lab:twins' declares "
        "min_len=1 (of type int)"
    )
    for text in ("mode='1", "mode='1\"", "mode=''", "mode='a,b'", "mode='a b'"):
        with pytest.raises(ValueError, match="objective.options must be .*'word' or \"word\""):
            parse_family_options(text)


def test_a_word_that_reads_as_another_type_round_trips_through_arms_and_configs(twin_lab, tmp_path):
    """options -> spec -> its one spelling -> arm name -> generated config -> options: the same
    settings, one arm for `mode=1` and `mode='1'`."""
    from prefix_titan.sweep.configs import SCALES, arms, render

    assert format_family_options({"mode": "1", "b": "true", "c": "x", "n": 2}) == (
        "mode='1',b='true',c=x,n=2"
    )
    for text in ("mode=1", "mode='1'", 'mode="1"', "mode=1,min_len=1"):
        spec = ObjectiveSpec(twin_lab, options=text)
        assert canonical_options(spec) == "mode='1'"
    arm = '[[arm]]\nname = "twin_lab:twins"\noptions = "{}"\n'
    (tmp_path / "sweep_arms.toml").write_text(arm.format("mode=1,case=true"))
    ours = {n: s for n, s in arms(tmp_path).items() if n.startswith("twin_lab")}
    assert list(ours) == ["twin_lab:twins_case_mode1"]
    spec = ours["twin_lab:twins_case_mode1"]
    assert spec.options == "case=true,mode='1'"
    for scale in SCALES:
        objective = tomllib.loads(render(spec, scale))["objective"]
        again = ObjectiveSpec.from_record(objective)
        assert again.options == spec.options
        assert again.arm_name() == spec.arm_name()
        assert family_options(again) == {"case": True, "mode": "1"}
        assert canonical_options(again) == spec.options
    (tmp_path / "sweep_arms.toml").write_text(arm.format("mode=1") + arm.format("mode='1'"))
    with pytest.raises(ValueError, match="'twin_lab:twins_mode1': the same objective is listed"):
        arms(tmp_path)


def test_the_declared_settings_are_shown_as_options_are_written(twin_lab, monkeypatch):
    with pytest.raises(ValueError) as e:
        family_options(ObjectiveSpec(twin_lab, options="min_lenn=2"))
    assert str(e.value).endswith(
        "(its settings, keyword arguments with their defaults: min_len=1, case=false, mode=a, "
        "any_=None)"
    )
    with pytest.raises(ValueError) as e:
        family_options(ObjectiveSpec(twin_lab, options="case=1"))
    assert str(e.value) == (
        "objective.options: case = 1 is of type int, and 'twin_lab:twins' declares case=false "
        "(of type bool)"
    )
    with pytest.raises(ValueError) as e:
        family_options(ObjectiveSpec(twin_lab, options="min_len=true"))
    assert str(e.value).startswith("objective.options: min_len = true is of type bool")
    module = type(sys)("word_lab")
    module.fam = lambda texts, spec, *, mode="1", p=0.5: None  # a word that reads as a number
    monkeypatch.setitem(sys.modules, "word_lab", module)
    with pytest.raises(ValueError) as e:
        family_options(ObjectiveSpec("word_lab:fam", options="q=2"))
    assert str(e.value).endswith("defaults: mode='1', p=0.5)")


def test_a_family_module_not_found_says_where_it_is_looked_for(tmp_path, monkeypatch):
    with pytest.raises(ValueError) as e:
        resolve_family("no_such_lab_for_options.twins:space_twins")
    assert str(e.value) == (
        "objective.name 'no_such_lab_for_options.twins:space_twins': cannot import "
        "'no_such_lab_for_options.twins' (No module named 'no_such_lab_for_options'): a family's "
        f"module is imported from the working directory ({os.getcwd()}) or a folder on "
        'PYTHONPATH, or installed (docs/objectives.md, "Add a target family")'
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"working directory ({tmp_path})")):
        resolve_family("no_such_lab_for_options:f")
    # found, but a module it imports is not: that is said alone
    (tmp_path / "needs_dep_lab.py").write_text("import no_such_dependency_for_options\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError) as e:
        resolve_family("needs_dep_lab:f")
    assert str(e.value) == (
        "objective.name 'needs_dep_lab:f': cannot import 'needs_dep_lab' (No module named "
        "'no_such_dependency_for_options')"
    )
