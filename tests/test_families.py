"""The registry of target families: built-ins by name, a user's family by import path, checked."""

import os
import pathlib
import re
import sys
from pathlib import Path

import pytest
import torch

from prefix_titan.objectives import (
    FAMILIES,
    ObjectiveSpec,
    TargetTable,
    build_target_table,
    resolve_family,
)

ROOT = Path(__file__).resolve().parent.parent
HAND = [" p", " per", " person", " personal", " personality", "x", None, "y"]


def test_builtin_families_are_registry_entries():
    assert set(FAMILIES) == {"ce", "label_smoothing", "prefix"} == set(ObjectiveSpec.built_in())
    for name, family in FAMILIES.items():
        assert resolve_family(name) is family


def test_a_built_in_family_no_setting_names_is_refused(monkeypatch, tmp_path):
    """A family added to FAMILIES alone (not to the families= of the settings it reads, nor to
    READS_NO_SETTING) is refused wherever it is resolved: its settings went unchecked (epsilon
    0.3 trained) and out of its sweep configs (the arm trained the default 0.1 there)."""
    from prefix_titan.objectives import spec as spec_module
    from prefix_titan.objectives.families import family_for
    from prefix_titan.sweep.configs import user_arm_specs

    def first_char(texts, spec):
        return FAMILIES["label_smoothing"](texts, spec)

    monkeypatch.setitem(FAMILIES, "first_char", first_char)
    for call in (
        lambda: resolve_family("first_char"),
        lambda: family_for(ObjectiveSpec("first_char", epsilon=0.3)),
    ):
        with pytest.raises(ValueError, match="a built-in family .* that no setting of Objective"):
            call()
    (tmp_path / "sweep_arms.toml").write_text('[[arm]]\nname = "first_char"\nepsilon = 0.3\n')
    with pytest.raises(ValueError, match="add 'first_char' to the families= of each setting"):
        user_arm_specs(tmp_path)
    monkeypatch.setattr(spec_module, "READS_NO_SETTING", ("ce", "first_char"))
    assert resolve_family("first_char") is first_char  # declared: it reads no setting
    with pytest.raises(ValueError, match="does not read objective.epsilon = 0.3"):
        ObjectiveSpec("first_char", epsilon=0.3).validate()


@pytest.fixture
def docs_family(tmp_path, monkeypatch):
    """The example family of docs/objectives.md, written out as the module `my_lab.targets`."""
    text = (ROOT / "docs" / "objectives.md").read_text()
    section = text[text.index("## Add a target family") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 20
    (tmp_path / "my_lab").mkdir()
    (tmp_path / "my_lab" / "__init__.py").write_text("")
    (tmp_path / "my_lab" / "targets.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    # a `my_lab` imported before (a project's own, by the docs' name) is not the docs' example
    names = ("my_lab.targets", "my_lab")
    before = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    yield "my_lab.targets:suffix_targets"
    for name in names:
        sys.modules.pop(name, None)
    sys.modules.update(before)


def test_the_documented_family_builds_a_checked_table(docs_family):
    # The documented family: tokens whose text is a suffix of the gold's share epsilon.
    texts = ["ing", "s", "walking", "walks", None, "king"]
    table = build_target_table(texts, ObjectiveSpec(docs_family, epsilon=0.2))
    dense = table.dense(torch.arange(len(texts)))
    torch.testing.assert_close(dense.sum(1), torch.ones(len(texts)))
    # "walking": suffixes "ing" and "king" share 0.2; the gold keeps 0.8.
    torch.testing.assert_close(dense[2], torch.tensor([0.1, 0, 0.8, 0, 0, 0.1]))
    torch.testing.assert_close(dense[3], torch.tensor([0, 0.2, 0, 0.8, 0, 0]))  # "walks" <- "s"
    torch.testing.assert_close(dense[4], torch.tensor([0, 0, 0, 0, 1.0, 0]))  # no text: one-hot
    # its own setting, by objective.options: suffixes of 2+ characters ("walks" loses "s")
    table = build_target_table(texts, ObjectiveSpec(docs_family, epsilon=0.2, options="min_len=2"))
    dense = table.dense(torch.arange(len(texts)))
    torch.testing.assert_close(dense[2], torch.tensor([0.1, 0, 0.8, 0, 0, 0.1]))
    torch.testing.assert_close(dense[3], torch.tensor([0, 0, 0, 1.0, 0, 0]))


def test_each_start_records_the_familys_source_file_and_its_digest(docs_family, tmp_path):
    """A run's record of its start names the file a family by import path comes from and the
    sha256 of its bytes (the table's digest says whether the targets changed, this which code
    made them); a built-in family, or one without a source file, records none or None."""
    import hashlib
    from types import SimpleNamespace

    from prefix_titan.objectives.families import family_source
    from prefix_titan.titan.metrics import start_record

    path = tmp_path / "my_lab" / "targets.py"
    source = family_source(docs_family)
    assert source == {
        "file": str(path.resolve()),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    assert family_source("prefix") is None
    checkpoint = SimpleNamespace(enable=True, folder="checkpoint", load_step=-1)
    (start,) = start_record(str(tmp_path / "run"), checkpoint, [], source)
    assert start["family_source"] == source
    (start,) = start_record(str(tmp_path / "run"), checkpoint, [], family_source("ce"))
    assert "family_source" not in start
    module = type(sys)("builtin_lab")
    module.fam = max  # a callable without a source file (nor a signature to check)
    sys.modules["builtin_lab"] = module
    try:
        assert family_source("builtin_lab:fam") == {"file": None, "sha256": None}
    finally:
        del sys.modules["builtin_lab"]


def test_targets_names_a_familys_own_settings_with_their_defaults(docs_family, monkeypatch):
    from prefix_titan.objectives import describe_objective

    words = describe_objective(ObjectiveSpec(docs_family, epsilon=0.2))  # it says it reads epsilon
    assert (
        words
        == f"{docs_family} (its own settings: min_len=1 (default); the shared ones it reads: epsilon=0.2)"
    )
    words = describe_objective(ObjectiveSpec(docs_family, epsilon=0.2, options="min_len=2"))
    assert "(its own settings: min_len=2; the shared" in words
    module = type(sys)("any_lab")
    module.fam = lambda texts, spec, **kw: None
    monkeypatch.setitem(sys.modules, "any_lab", module)
    words = describe_objective(ObjectiveSpec("any_lab:fam", options="k=3"))
    shared = "tau=0.5, normalize=False, support='prefix', epsilon=0.1"
    assert words.endswith(
        f"(its own settings: k=3, others as it defaults them; the shared ones it may read: {shared})"
    )
    assert describe_objective(ObjectiveSpec("label_smoothing", epsilon=0.2)) == (
        "label_smoothing (epsilon=0.2)"
    )


def test_the_documented_family_trains_through_the_kernel(docs_family, odd_texts):
    from prefix_titan.objectives import target_loss
    from prefix_titan.objectives.reference import reference_loss

    table = build_target_table(odd_texts, ObjectiveSpec(docs_family))
    logits = torch.randn(64, table.vocab_size, requires_grad=True)
    labels = torch.randint(0, table.vocab_size, (64,))
    got = target_loss(logits, labels, table.tensors("cpu"))
    ref = reference_loss(logits, labels, table)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-3)


def test_the_documented_test_of_a_family_passes(docs_family):
    """docs/objectives.md's second snippet: how to test a family of one's own."""
    text = (ROOT / "docs" / "objectives.md").read_text()
    section = text[text.index("## Add a target family") :]
    snippet = re.findall(r"```python\n(.*?)```", section, re.S)[1]
    assert "assert_close(g_ours, g_want" in snippet
    exec(compile(snippet, "docs/objectives.md", "exec"), {})


def _family(**table):
    def family(texts, spec):
        V = len(texts)
        base = dict(
            idx=torch.arange(V)[:, None], weight=torch.ones(V, 1), background=torch.zeros(V)
        )
        return TargetTable(**{**base, **{k: v(V) for k, v in table.items()}})

    return family


def _row(V: int, values: dict, fill: float = 1.0) -> torch.Tensor:
    """[V, 1] weights of `fill` but at the rows given."""
    out = torch.full((V, 1), fill)
    for y, v in values.items():
        out[y, 0] = v
    return out


@pytest.mark.parametrize(
    "family,message",
    [
        (lambda texts, spec: {"idx": None}, "the result is a dict, not a TargetTable"),
        (
            _family(weight=lambda V: torch.full((V, 1), 0.5)),
            "row 0 (gold 'a') sums to 0.5, not 1 within 0.0001 (id: weight 0: 0.5; background 0 on each of 4 ids)",
        ),
        (  # not a tensor at all: said so, not as a shape the array has
            _family(idx=lambda V: torch.arange(V)[:, None].numpy()),
            "idx is a numpy.ndarray; it must be a torch.Tensor (torch.from_numpy makes one)",
        ),
        (
            _family(
                weight=lambda V: torch.full((V, 1), 2.0),
                background=lambda V: torch.full((V,), -1 / V),
            ),
            "the background is negative (every weight and background must be >= 0): row 0 (gold "
            "'a') (background -0.25 on each of 4 ids)",
        ),
        (
            _family(idx=lambda V: torch.zeros(V, 1, dtype=torch.long)),
            "idx[y, 0] is not the gold id",
        ),
        (
            _family(
                idx=lambda V: torch.arange(V)[:, None].repeat(1, 2000),
                weight=lambda V: torch.full((V, 2000), 1 / 2000),
            ),
            "rows have 2000 sparse entries; allowed: 1 to 1024 (a wider target: keep each row's "
            "heaviest entries",
        ),
        (
            _family(
                idx=lambda V: torch.stack([torch.arange(V), torch.full((V,), V)], 1),
                weight=lambda V: torch.tensor([[1.0, 0.0]]).repeat(V, 1),
            ),
            "ids outside [0, 4): row 0 (gold 'a') holds 4",
        ),
        (_family(weight=lambda V: torch.full((V, 1), float("nan"))), "not all finite"),
        # the first bad row is named, not the worst
        (_family(weight=lambda V: _row(V, {2: float("nan")})), "not all finite: row 2 (gold 'c') "),
        (
            _family(background=lambda V: _row(V, {1: -0.1, 3: -0.5}, 0.0)[:, 0]),
            "the background is negative (every weight and background must be >= 0): row 1 (gold "
            "'b') (background -0.1 on each of 4 ids)",
        ),
        (
            _family(idx=lambda V: torch.tensor([[0], [1], [2], [1]])),
            "row 3 (gold 'd') starts with 1",
        ),
        (
            _family(weight=lambda V: _row(V, {1: 0.9, 2: 0.5})),
            "row 1 (gold 'b') sums to 0.9, not 1",
        ),
        (
            _family(weight=lambda V: _row(V, {1: 0.99}).bfloat16()),
            "weight is (4, 1) torch.bfloat16; it must be float32 [4, 1] (the kernels compute in "
            "float32) (.float() converts it)",
        ),
        (  # float64 made every loss float64
            _family(background=lambda V: torch.zeros(V, dtype=torch.float64)),
            "background is (4,) torch.float64; it must be float32 [4] (.float() converts it)",
        ),
    ],
)
def test_a_bad_family_is_refused_by_name(monkeypatch, family, message):
    module = type(sys)("bad_lab")
    module.bad = family
    monkeypatch.setitem(sys.modules, "bad_lab", module)
    with pytest.raises(ValueError) as e:
        build_target_table(["a", "b", "c", "d"], ObjectiveSpec("bad_lab:bad"))
    assert "target family 'bad_lab:bad'" in str(e.value) and message in str(e.value)


def _wide(V: int, K: int, head: list[float]) -> torch.Tensor:
    """[V, K] weights: one-hot on the gold but row 0, which starts with `head`, then 0s."""
    out = torch.zeros(V, K)
    out[:, 0] = 1.0
    out[0] = 0.0
    out[0, : len(head)] = torch.tensor(head)
    return out


@pytest.mark.parametrize(
    "weight,background,message",
    [
        (  # a row that sums to 0.9: its nonzero entries, the largest first, not 173 zeros
            [0.05, 0.8, 0.05],
            0.0,
            "row 0 (gold 'a') sums to 0.9, not 1 within 0.0001 (id: weight 1: 0.8, 0: 0.05, 2: 0.05; the "
            "other 173 of its 176 entries 0; background 0 on each of 300 ids)",
        ),
        (  # more nonzero entries than are shown: the largest 5, and a count of the rest
            [0.5, *[0.01] * 5, 0.02, 0.03],
            0.0,
            "(id: weight 0: 0.5, 7: 0.03, 6: 0.02, 1: 0.01, 2: 0.01, and 3 more; the other 168 "
            "of its 176 entries 0;",
        ),
        (  # the background is the fault, not the weights
            [1.0],
            -9.99e-05,
            "the background is negative (every weight and background must be >= 0): row 0 "
            "(gold 'a') (background -9.99e-05 on each of 300 ids)",
        ),
        (  # a negative weight: the negative ones, not the whole row
            [0.7, -0.1, 0.4],
            0.0,
            "some weights are negative (every weight and background must be >= 0): row 0 (gold "
            "'a') (id: weight 1: -0.1; the other 175 of its 176 entries >= 0; background 0 on "
            "each of 300 ids)",
        ),
        (
            [float("nan"), 0.5],
            0.0,
            "weights are not all finite: row 0 (gold 'a') (id: weight 0: nan; the other 175 of "
            "its 176 entries finite;",
        ),
    ],
)
def test_a_refused_table_shows_a_few_entries_of_its_row_and_names_its_fault(
    monkeypatch, weight, background, message
):
    """A refusal of a wide table (V = 300, K = 176) shows at most a handful of the bad row's
    entries, the largest (or the offending) ones, and says how many more there are; a negative
    background is named as the fault."""
    V, K = 300, 176
    module = type(sys)("wide_lab")
    module.wide = lambda texts, spec: TargetTable(
        (torch.arange(V)[:, None] + torch.arange(K)) % V,
        _wide(V, K, weight),
        _row(V, {0: background}, 0.0)[:, 0],
    )
    monkeypatch.setitem(sys.modules, "wide_lab", module)
    with pytest.raises(ValueError) as e:
        build_target_table(["a", *["b"] * (V - 1)], ObjectiveSpec("wide_lab:wide"))
    assert message in str(e.value) and len(str(e.value)) < 400, str(e.value)


@pytest.mark.parametrize(
    "name,message",
    [
        ("focal", "objective.name must be one of ce, label_smoothing, prefix, or an import path"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("math:no_such_function", "math has no function 'no_such_function'"),
        ("math:sqr", "math has no function 'sqr' (did you mean 'math:sqrt'?)"),
        ("math.sqrt", "got 'math.sqrt' (did you mean 'math:sqrt'?)"),
        ("math.no_such_function", "got 'math.no_such_function'"),
        ("math:", "objective.name must be one of"),
        ("label_smothing", "got 'label_smothing' (did you mean 'label_smoothing'?)"),
        ("Prefix", "got 'Prefix' (did you mean 'prefix'?)"),
    ],
)
def test_unknown_family_names_are_refused(name, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_family(name)


@pytest.mark.parametrize(
    "body,raised,line",
    [
        ("x = 1\ndef f(texts, spec:\n    pass\n", "SyntaxError", 2),
        ("x = 1\nraise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here", 2),
        ("import math\n\nmath.sqrt(-1)\n", "ValueError: math domain error", 3),
        # raised inside a library the module called: the module's own line, the message on one
        ("import json\n\njson.loads('{\\n')\n", "JSONDecodeError: Expecting property name", 3),
    ],
)
def test_a_family_module_that_fails_to_import_is_refused_in_one_line(
    tmp_path, monkeypatch, body, raised, line
):
    """Any exception while importing a family's module (not only ImportError) is refused as a
    ValueError naming the module, the exception and where it was raised (file:line)."""
    (tmp_path / "broken_lab_xyz.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_lab_xyz", raising=False)
    with pytest.raises(ValueError) as e:
        resolve_family("broken_lab_xyz:f")
    message = str(e.value)
    assert message.startswith(
        f"objective.name 'broken_lab_xyz:f': importing 'broken_lab_xyz' raised {raised}"
    ), message
    assert message.endswith(f"(at {tmp_path / 'broken_lab_xyz.py'}:{line})"), message
    assert "\n" not in message
    sys.modules.pop("broken_lab_xyz", None)


def test_a_misspelt_family_of_ones_own_is_told_the_nearest_function(monkeypatch):
    """A function name the module lacks: the nearest of its functions (not its classes) is
    suggested; a dot where the colon goes: the colon form, where that module holds it."""
    module = type(sys)("near_lab")
    module.first_char_targets = lambda texts, spec: None
    module.First_Char_Target = type("First_Char_Target", (), {})
    monkeypatch.setitem(sys.modules, "near_lab", module)
    for name, message in (
        ("near_lab:first_char_target", "(did you mean 'near_lab:first_char_targets'?)"),
        ("near_lab.first_char_targets", "(did you mean 'near_lab:first_char_targets'?)"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            resolve_family(name)
    with pytest.raises(ValueError) as e:
        resolve_family("near_lab:First_Char_Targe")  # nearer the class than the function
    assert str(e.value).endswith("(did you mean 'near_lab:first_char_targets'?)")
    with pytest.raises(ValueError) as e:
        resolve_family("near_lab:zzz")
    assert str(e.value).endswith("near_lab has no function 'zzz'")


def test_a_family_that_cannot_take_texts_and_spec_is_refused_when_named(monkeypatch):
    module = type(sys)("bad_lab")
    module.one = lambda texts: None
    module.three = lambda texts, spec, extra: None
    module.fine = lambda texts, spec, extra=1: None
    monkeypatch.setitem(sys.modules, "bad_lab", module)
    for name, shown in (("one", "one(texts)"), ("three", "three(texts, spec, extra)")):
        with pytest.raises(ValueError) as e:
            resolve_family(f"bad_lab:{name}")
        assert f"is called as {name}(texts, spec) and returns a TargetTable; {shown} cannot" in (
            str(e.value)
        )
    assert resolve_family("bad_lab:fine") is module.fine


@pytest.mark.slow
def test_the_launch_checks_build_a_family_of_ones_own_before_any_run(tmp_path, monkeypatch):
    """A sweep launch's checks (titan/preflight.py) build a family's table as the run would, so
    its error names the runs before any starts; a good family passes, one table for its seeds."""
    from helpers import embedded_tokenizer_at

    from prefix_titan.titan.preflight import check_runs

    module = type(sys)("bad_lab")
    calls = []
    module.good = lambda texts, spec: calls.append(1) or FAMILIES["ce"](texts, spec)
    module.broken = lambda texts, spec: {}["no such key"]
    module.unnormalised = _family(weight=lambda V: torch.full((V, 1), 0.5))
    monkeypatch.setitem(sys.modules, "bad_lab", module)
    tokenizer = embedded_tokenizer_at(tmp_path / "tokenizer")

    def run(family, seed):
        args = ["--job.config_file", str(ROOT / "train_configs" / "embedded_default.toml")]
        args += ["--model.hf_assets_path", tokenizer, "--objective.name", f"bad_lab:{family}"]
        dump = tmp_path / f"{family}{seed}"
        return (f"{family} seed {seed}", [*args, "--job.dump_folder", str(dump)])

    problems = check_runs([run(f, s) for f in ("good", "broken", "unnormalised") for s in (1, 2)])
    assert len(calls) == 1, calls  # one table per setting, whatever the seeds
    assert len(problems) == 2, problems
    assert problems[0].startswith("broken seed 1, broken seed 2: objective.name 'bad_lab:broken'")
    assert (
        "its target table could not be built (target family 'bad_lab:broken' raised "
        in (problems[0])
    )
    assert "KeyError: 'no such key')" in problems[0]
    assert problems[1].startswith("unnormalised seed 1, unnormalised seed 2: ")
    assert "row 0 sums to 0.5, not 1" in problems[1]
    assert "(TableError: " not in problems[1]  # (its message names the family, as a run says)
    # a run of the good family that trained towards another table (its code edited since): named
    # before any run starts
    import json

    from torchtitan.config import ConfigManager

    from prefix_titan.runs.folder import RUN_CONFIG, TARGET_TABLE, run_record

    name, args = run("good", 2)
    job = ConfigManager().parse_args(args)
    folder = pathlib.Path(job.job.dump_folder)
    (folder / "checkpoint" / "step-1").mkdir(parents=True)
    (folder / RUN_CONFIG).write_text(json.dumps({**run_record(job), TARGET_TABLE: "f" * 64}))
    (problem,) = check_runs([run("good", 1), (name, args)])
    assert problem.startswith(f"good seed 2: {folder} holds a run that trained towards another "), (
        problem
    )


def test_a_sweep_launch_refuses_a_seed_whose_arm_trained_towards_another_table(
    tmp_path, monkeypatch
):
    """Another seed of the arm, in the sweep folder, trained towards another table than the
    family builds now (its code edited in between): the launch's checks name it before any run
    starts; another arm's run beside it, a record without the digest, or a run outside a sweep
    is not compared."""
    import json

    from helpers import embedded_tokenizer_at
    from torchtitan.config import ConfigManager

    from prefix_titan.runs.folder import RUN_CONFIG, TARGET_TABLE, run_record
    from prefix_titan.titan.preflight import check_runs

    module = type(sys)("edited_lab")
    module.fam = lambda texts, spec: FAMILIES["ce"](texts, spec)
    monkeypatch.setitem(sys.modules, "edited_lab", module)
    tokenizer = embedded_tokenizer_at(tmp_path / "tokenizer")
    sweep = tmp_path / "sweep"

    def run(seed, *extra):
        args = ["--job.config_file", str(ROOT / "train_configs" / "embedded_default.toml")]
        args += ["--model.hf_assets_path", tokenizer, "--objective.name", "edited_lab:fam"]
        args += [*extra, "--job.dump_folder", str(sweep / "edited" / f"seed{seed}")]
        return (f"edited seed {seed}", args)

    def record(seed, sha, *extra):
        job = ConfigManager().parse_args(run(seed, *extra)[1])
        folder = pathlib.Path(job.job.dump_folder)
        folder.mkdir(parents=True)
        written = run_record(job) if sha is None else {**run_record(job), TARGET_TABLE: sha * 64}
        (folder / RUN_CONFIG).write_text(json.dumps(written))
        return folder

    where = {"folder": str(sweep), "extra": []}
    record(3, None)  # (recorded before the digest was kept)
    record(4, "e", "--objective.position_gamma", "0.9")  # another arm
    assert check_runs([run(2)], sweep=where) == []
    first = record(1, "f")
    (problem,) = check_runs([run(2)], sweep=where)
    assert problem.startswith(
        f"edited seed 2: {first} holds a run of arm edited_lab:fam that trained towards another "
        "target table (sha256 ffffffffffff...)"
    )
    assert problem.endswith(
        "Restore the code that run trained with, or launch the arm into another --sweep-dir"
    )
    assert check_runs([run(2)]) == []  # not a sweep's run


@pytest.mark.slow
def test_a_new_seed_of_a_built_in_arm_is_checked_against_its_other_seeds_tables(
    tmp_path, monkeypatch
):
    """A built-in family's table is built at launch only where a new seed joins an arm whose
    other seeds recorded theirs (the package changed in between: refused, naming the run); a
    seed that resumes its own folder, or the first seed of an arm, builds none."""
    import json

    from helpers import embedded_tokenizer_at
    from torchtitan.config import ConfigManager

    from prefix_titan.runs.folder import RUN_CONFIG, TARGET_TABLE, run_record
    from prefix_titan.titan.loss import LossPlans
    from prefix_titan.titan.preflight import check_runs

    built = []
    table_for = LossPlans.table_for
    monkeypatch.setattr(
        LossPlans, "table_for", lambda self, job: built.append(1) or table_for(self, job)
    )
    tokenizer = embedded_tokenizer_at(tmp_path / "tokenizer")
    sweep = tmp_path / "sweep"
    where = {"folder": str(sweep), "extra": []}

    def run(seed):
        args = ["--job.config_file", str(ROOT / "train_configs" / "embedded_default.toml")]
        args += ["--model.hf_assets_path", tokenizer, "--objective.name", "label_smoothing"]
        return (f"ls seed {seed}", [*args, "--job.dump_folder", str(sweep / "ls" / f"s{seed}")])

    def record(seed, sha):
        job = ConfigManager().parse_args(run(seed)[1])
        folder = pathlib.Path(job.job.dump_folder)
        folder.mkdir(parents=True)
        (folder / RUN_CONFIG).write_text(json.dumps({**run_record(job), TARGET_TABLE: sha}))
        return folder

    assert check_runs([run(1)], sweep=where) == [] and built == []  # the arm's first seed
    first = record(1, "f" * 64)
    (problem,) = check_runs([run(2)], sweep=where)
    assert problem.startswith(
        f"ls seed 2: {first} holds a run of arm label_smoothing that trained towards another "
        "target table (sha256 ffffffffffff...)"
    )
    assert len(built) == 1
    assert check_runs([run(1)], sweep=where) == [] and len(built) == 1  # its own folder
    assert check_runs([run(2)]) == [] and len(built) == 1  # not a sweep's run
    ok = ConfigManager().parse_args(run(1)[1])
    (first / RUN_CONFIG).write_text(
        json.dumps({**run_record(ok), TARGET_TABLE: LossPlans().table_for(ok).sha256})
    )
    assert check_runs([run(2)], sweep=where) == []  # the same table: joins its arm
    (sweep / "ls" / "s3").mkdir()
    (sweep / "ls" / "s3" / RUN_CONFIG).write_text('{"objective": ')  # cut by a crash
    (problem,) = check_runs([run(2)], sweep=where)
    assert problem.startswith(f"ls seed 2: {sweep / 'ls' / 's3' / RUN_CONFIG}")
    assert problem.endswith(f"Restore it, or move {sweep / 'ls' / 's3'} out of the sweep folder")


def test_a_familys_own_settings_are_its_declared_keyword_arguments(monkeypatch):
    from prefix_titan.objectives import family_options

    module = type(sys)("opt_lab")
    module.fam = lambda texts, spec, *, n=1, x=0.5, strict=False, word="a", any_=None: (n, x)
    module.loose = lambda texts, spec, **kw: kw
    monkeypatch.setitem(sys.modules, "opt_lab", module)

    def options(name, text):
        return family_options(ObjectiveSpec(f"opt_lab:{name}", options=text))

    # an int for a float default is a float; the defaults' types decide
    assert options("fam", "n=3,x=1,strict=true,word=b,any_=2") == {
        "n": 3,
        "x": 1.0,
        "strict": True,
        "word": "b",
        "any_": 2,
    }
    assert isinstance(options("fam", "x=1")["x"], float)
    assert options("loose", "k=v") == {"k": "v"}  # **kwargs: any key
    with pytest.raises(ValueError) as e:
        options("fam", "m=2")
    assert "sets m, which 'opt_lab:fam' does not declare" in str(e.value)
    assert "n=1, x=0.5, strict=false, word=a, any_=None" in str(e.value)
    for text, message in (
        ("n=2.5", "n = 2.5 is of type float, and 'opt_lab:fam' declares n=1 (of type int)"),
        ("strict=1", "strict = 1 is of type int, and 'opt_lab:fam' declares strict=false"),
        ("x=abc", "x = 'abc' is of type str"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            options("fam", text)


@pytest.mark.parametrize("word", ["False", "TRUE", "True"])
def test_a_capitalised_true_or_false_for_a_bool_setting_is_told_the_lower_case_word(
    monkeypatch, word
):
    """Options read only `true` and `false` as booleans: another case of them, for a setting
    whose default is a bool, is refused with the word to write; for a word setting it is a word."""
    from prefix_titan.objectives import family_options

    module = type(sys)("case_lab")
    module.fam = lambda texts, spec, *, skip_space=True, word="a": None
    monkeypatch.setitem(sys.modules, "case_lab", module)
    with pytest.raises(ValueError) as e:
        family_options(ObjectiveSpec("case_lab:fam", options=f"word=b, skip_space = {word}"))
    assert str(e.value).endswith(
        f"skip_space = {word!r} is of type str, and 'case_lab:fam' declares skip_space=true "
        f"(of type bool): write skip_space={word.lower()} (true / false, lower case)"
    )
    options = family_options(ObjectiveSpec("case_lab:fam", options=f"word={word}"))
    assert options == {"word": word}


def test_a_bad_family_option_is_refused_before_the_run_starts(tmp_path, docs_family):
    from torchtitan.config import ConfigManager

    from prefix_titan.titan.checks import check_job_config

    def job(*overrides):
        config = ["--job.config_file", str(ROOT / "train_configs" / "embedded_default.toml")]
        config += ["--job.dump_folder", str(tmp_path / "run")]  # not the README run's folder
        return ConfigManager().parse_args([*config, "--objective.name", docs_family, *overrides])

    check_job_config(j := job("--objective.options", " min_len=2"))  # declared, and an int
    assert j.objective.options == "min_len=2"  # recorded in its one spelling
    check_job_config(j := job("--objective.options", "min_len=1"))
    assert j.objective.options is None  # the default: no part of the objective
    with pytest.raises(ValueError, match="sets max_len, which .* does not declare .*min_len=1"):
        check_job_config(job("--objective.options", "max_len=2"))
    with pytest.raises(ValueError, match="objective.name = 'prefix' reads none"):
        check_job_config(job("--objective.name", "prefix", "--objective.options", "n=1"))


def test_a_family_that_says_what_it_reads_refuses_the_other_shared_settings(
    tmp_path, docs_family, monkeypatch
):
    """The documented family reads epsilon (its `reads`): tau or support set away from their
    defaults is refused where a run is checked, a table built and a sweep's arms read, each
    named; at their defaults they pass. A `reads` that is not a tuple of shared settings is
    refused, naming them; a family without `reads` takes every one."""
    from torchtitan.config import ConfigManager

    from prefix_titan.sweep.configs import user_arm_specs
    from prefix_titan.titan.checks import check_job_config

    base = ["--job.config_file", str(ROOT / "train_configs" / "embedded_default.toml")]
    base += ["--job.dump_folder", str(tmp_path / "run"), "--objective.name", docs_family]
    check_job_config(ConfigManager().parse_args([*base, "--objective.epsilon", "0.3"]))
    refused = (
        f"objective.name = '{docs_family}' does not read objective.tau = 1.0; "
        "objective.support = 'vocab': leave them at their defaults (or unset), or add them to "
        "its reads (suffix_targets.reads = ('epsilon',))"
    )
    unread = ["--objective.tau", "1.0", "--objective.support", "vocab"]
    with pytest.raises(ValueError, match=re.escape(refused)):
        check_job_config(ConfigManager().parse_args([*base, *unread]))
    texts = ["ing", "s", "walking"]
    with pytest.raises(ValueError, match=re.escape(refused)):
        build_target_table(texts, ObjectiveSpec(docs_family, tau=1.0, support="vocab"))
    (tmp_path / "sweep_arms.toml").write_text(
        f'[[arm]]\nname = "{docs_family}"\nepsilon = 0.3\n\n'
        f'[[arm]]\nname = "{docs_family}"\ntau = 2.0\n'
    )
    with pytest.raises(ValueError, match="arm 2 .* does not read objective.tau = 2.0: leave"):
        user_arm_specs(tmp_path)
    family = sys.modules["my_lab.targets"].suffix_targets
    for bad in ("epsilon", ("epsilon", "min_len"), (1,)):
        monkeypatch.setattr(family, "reads", bad)
        with pytest.raises(
            ValueError,
            match="its `reads` names the shared settings it reads, a "
            "tuple of tau, normalize, support, epsilon",
        ):
            build_target_table(texts, ObjectiveSpec(docs_family))
    monkeypatch.delattr(family, "reads")
    build_target_table(texts, ObjectiveSpec(docs_family, tau=1.0, support="vocab"))


def test_one_objective_has_one_spelling_of_its_options(monkeypatch):
    from prefix_titan.objectives import canonical_options

    module = type(sys)("opt_lab")
    module.fam = lambda texts, spec, *, min_len=1, p=1.0, strict=False: None
    module.loose = lambda texts, spec, **kw: None
    monkeypatch.setitem(sys.modules, "opt_lab", module)

    def canonical(text, name="fam"):
        return canonical_options(ObjectiveSpec(f"opt_lab:{name}", options=text))

    assert canonical("p=2") == canonical("p=2.0") == canonical(" p=2.0, min_len=1") == "p=2.0"
    assert canonical("strict=true,min_len=3") == canonical("min_len=3, strict=true")
    assert canonical("strict=true,min_len=3") == "min_len=3,strict=true"
    assert canonical("p=1.0,strict=false") is None and canonical(None) is None  # all defaults
    assert canonical("p=1e-05") == "p=1e-05"
    assert canonical("z=1,a=x", "loose") == "a=x,z=1"  # **kwargs: no defaults known, sorted
    spec = ObjectiveSpec("opt_lab:fam", options=canonical("p=2,min_len=2"))
    assert spec.arm_name() == "opt_lab:fam_min_len2_p2.0"


def test_a_family_that_raises_is_named_with_its_error(monkeypatch, capsys, tmp_path):
    from helpers import embedded_tokenizer_at

    from prefix_titan.objectives import FamilyError
    from prefix_titan.targets import _main

    module = type(sys)("bad_lab")
    module.broken = lambda texts, spec: {}["no such key"]
    module.needs = lambda texts, spec, *, alpha: None
    monkeypatch.setitem(sys.modules, "bad_lab", module)
    with pytest.raises(FamilyError, match="target family 'bad_lab:broken' raised KeyError") as e:
        build_target_table(["a", "b"], ObjectiveSpec("bad_lab:broken"))
    assert isinstance(e.value.__cause__, KeyError)  # its traceback kept
    tokenizer = embedded_tokenizer_at(tmp_path / "tokenizer")
    with pytest.raises(SystemExit):
        _main(["--hf-assets-path", tokenizer, "--token", " the", "--objective", "bad_lab:broken"])
    err = capsys.readouterr().err
    assert "Traceback" in err and "error: target family 'bad_lab:broken' raised KeyError" in err
    with pytest.raises(ValueError, match="declares alpha without a default: a family's own"):
        resolve_family("bad_lab:needs")


def test_a_family_that_edits_its_texts_leaves_the_callers_vocabulary_as_it_was(monkeypatch):
    """A family gets its own copy of the token texts: one that edits them in place (strips
    them here) leaves the caller's list, which a run shares with its validation metrics, and the
    refusal's row names, as they were."""

    def stripping(texts, spec):
        texts[:] = [t if t is None else t.strip() for t in texts]
        return FAMILIES["ce"](texts, spec)

    module = type(sys)("edit_lab")
    module.stripping = stripping
    monkeypatch.setitem(sys.modules, "edit_lab", module)
    texts = list(HAND)
    build_target_table(texts, ObjectiveSpec("edit_lab:stripping"))
    assert texts == HAND


def test_a_sweeps_arms_take_their_options_in_one_spelling(tmp_path, monkeypatch):
    from prefix_titan.sweep.configs import arms

    module = type(sys)("opt_lab")
    module.fam = lambda texts, spec, *, min_len=1, p=1.0: None
    monkeypatch.setitem(sys.modules, "opt_lab", module)
    arm = '[[arm]]\nname = "opt_lab:fam"\noptions = "{}"\n'
    (tmp_path / "sweep_arms.toml").write_text(arm.format("p=2, min_len=1"))
    ours = {n: s for n, s in arms(tmp_path).items() if n.startswith("opt_lab")}
    assert list(ours) == ["opt_lab:fam_p2.0"] and ours["opt_lab:fam_p2.0"].options == "p=2.0"
    (tmp_path / "sweep_arms.toml").write_text(arm.format("p=2") + arm.format("p=2.0"))
    with pytest.raises(ValueError, match="'opt_lab:fam_p2.0': the same objective is listed twice"):
        arms(tmp_path)


def test_a_bad_table_from_a_setting_names_the_setting(monkeypatch):
    """A family of one's own whose table breaks at some value of its setting: the refusal says
    which settings built it."""
    from prefix_titan.objectives.table import TargetTable

    def shared(texts, spec, *, mass=0.1):
        V = len(texts)
        idx = torch.arange(V).unsqueeze(1)
        weight = torch.full((V, 1), 1.0 - mass)
        return TargetTable(idx, weight, torch.full((V,), mass / V))

    module = type(sys)("mass_lab")
    module.shared = shared
    monkeypatch.setitem(sys.modules, "mass_lab", module)
    assert build_target_table(["a", "b"], ObjectiveSpec("mass_lab:shared", options="mass=0.4"))
    with pytest.raises(ValueError) as e:
        build_target_table(["a", "b"], ObjectiveSpec("mass_lab:shared", options="mass=1.5"))
    assert str(e.value).startswith("target family 'mass_lab:shared' returned a table where some")
    assert str(e.value).endswith("(its settings here: objective.options = 'mass=1.5')")
    # a shared setting given (the family says not which it reads): named too
    with pytest.raises(ValueError) as e:
        build_target_table(
            ["a", "b"], ObjectiveSpec("mass_lab:shared", epsilon=0.3, options="mass=1.5")
        )
    said = "(its settings here: objective.epsilon = 0.3, objective.options = 'mass=1.5')"
    assert str(e.value).endswith(said)
    shared.reads = ("epsilon",)  # one it reads: named at its value, the default too
    with pytest.raises(ValueError) as e:
        build_target_table(["a", "b"], ObjectiveSpec("mass_lab:shared", options="mass=1.5"))
    said = "(its settings here: objective.epsilon = 0.1, objective.options = 'mass=1.5')"
    assert str(e.value).endswith(said)


@pytest.mark.slow
def test_the_launch_checks_refuse_two_arms_that_would_train_alike(tmp_path, monkeypatch):
    """A family of one's own reads only the settings it reads: two arms that differ in another
    one (tau here) build the same table and would train alike; the checks name them. The same
    family at another weighting (position_gamma), or reading the setting, is fine."""
    from helpers import embedded_tokenizer_at

    from prefix_titan.titan.preflight import check_runs

    module = type(sys)("alike_lab")
    module.deaf = lambda texts, spec: FAMILIES["ce"](texts, spec)
    module.hears = lambda texts, spec: FAMILIES["label_smoothing"](
        texts, ObjectiveSpec("label_smoothing", epsilon=spec.tau / 10)
    )
    monkeypatch.setitem(sys.modules, "alike_lab", module)
    tokenizer = embedded_tokenizer_at(tmp_path / "tokenizer")

    def run(family, *extra):
        args = ["--job.config_file", str(ROOT / "train_configs" / "embedded_default.toml")]
        args += ["--model.hf_assets_path", tokenizer, "--objective.name", f"alike_lab:{family}"]
        label = " ".join([family, *extra[1::2]])
        dump = tmp_path / label.replace(" ", "_")
        return (label, [*args, *extra, "--job.dump_folder", str(dump)])

    (problem,) = check_runs([run("deaf"), run("deaf", "--objective.tau", "1.0")])
    assert problem == (
        "deaf, deaf 1.0: objectives alike_lab:deaf and alike_lab:deaf_tau1.0 build the same "
        "target table (they differ in tau 0.5 / 1.0, which alike_lab:deaf does not read) and "
        "would train alike: leave one out (--arms), or have the family read the setting"
    )
    weighted = run("deaf", "--objective.tau", "1.0", "--objective.position_gamma", "0.99")
    assert check_runs([run("deaf"), weighted]) == []
    assert check_runs([run("hears"), run("hears", "--objective.tau", "1.0")]) == []


@pytest.mark.slow  # starts torchtitan's trainer (about 9 s each)
def test_a_training_whose_family_is_refused_ends_with_one_error(tmp_path):
    """`prefix_titan.train` of a family of one's own whose table is refused at its settings:
    one line naming the family, what is wrong and the settings, status 2, no traceback; a family
    whose own code raises: its traceback, then the line."""
    import subprocess

    (tmp_path / "mass_lab.py").write_text(
        "import torch\n"
        "from prefix_titan.objectives.table import TargetTable\n\n\n"
        "def shared(texts, spec, *, mass=0.1):\n"
        "    V = len(texts)\n"
        "    weight = torch.full((V, 1), 1.0 - mass)\n"
        "    return TargetTable(torch.arange(V).unsqueeze(1), weight, torch.full((V,), mass / V))\n\n\n"
        "def broken(texts, spec):\n"
        '    return {}["nope"]\n'
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def train(*args):
        config = ["--job.config_file", str(ROOT / "train_configs" / "embedded_default.toml")]
        config += ["--training.steps", "2", "--job.dump_folder", str(tmp_path / "run")]
        command = [sys.executable, "-m", "prefix_titan.train", *config, *args]
        return subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )

    out = train("--objective.name", "mass_lab:shared", "--objective.options", "mass=1.5")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert (
        "error: objective.name 'mass_lab:shared': its target table could not be built (target "
        "family 'mass_lab:shared' returned a table where some weights are negative"
    ) in out.stderr
    assert "(its settings here: objective.options = 'mass=1.5'))." in out.stderr
    assert not (tmp_path / "run").exists()  # the folders torchtitan made for it: removed
    out = train("--objective.name", "mass_lab:broken")
    assert out.returncode == 2 and "Traceback" in out.stderr, out.stderr[-3000:]
    assert "error: target family 'mass_lab:broken' raised KeyError: 'nope'" in out.stderr
    assert not (tmp_path / "run").exists()
