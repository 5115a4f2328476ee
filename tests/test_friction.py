"""The first hour with the commands: eval's --limit sample, its quiet output and its refusals,
the test seed line, without a model (lm-eval's own evaluation is faked where it would need one)."""

import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
from dataclasses import asdict

import pytest
from helpers import ROOT, fake_export

from prefix_titan.evaluation import harness
from prefix_titan.evaluation.harness import LIMIT_SEED, sample_docs


def test_a_limit_is_a_seeded_random_sample_not_the_first_documents():
    first = sample_docs(2000, 40, LIMIT_SEED, "char_first_letter")
    assert first != list(range(40)) and first == sorted(set(first)) and len(first) == 40
    assert all(0 <= i < 2000 for i in first) and max(first) > 1000
    assert first == sample_docs(2000, 40, LIMIT_SEED, "char_first_letter")  # every model alike
    assert first != sample_docs(2000, 40, LIMIT_SEED + 1, "char_first_letter")
    assert first != sample_docs(2000, 40, LIMIT_SEED, "char_spell")  # each task its own draw
    # a blank twin holds its task's items in the same order: it is compared on the same ones
    assert sample_docs(2000, 40, LIMIT_SEED, "char_first_letter_blank") == first
    assert sample_docs(5, 40, LIMIT_SEED, "piqa") == [0, 1, 2, 3, 4]


class FakeTask:
    def __init__(self, n):
        self.eval_docs = [{"word": f"w{i}"} for i in range(n)]


class FakeTaskManager:
    all_tasks = ["hellaswag", "piqa"]

    def __init__(self):
        self.tasks = {"hellaswag": FakeTask(100), "piqa": FakeTask(3)}

    def load(self, specs):
        return {"tasks": {t: self.tasks[t] for t in specs}, "groups": {}}


def test_the_limit_reaches_lm_eval_as_a_sample_and_is_recorded(tmp_path, monkeypatch):
    import lm_eval

    calls = []

    def simple_evaluate(**kwargs):
        """lm-eval logs each sampled item under its document's index."""
        calls.append(kwargs)
        chosen = kwargs["samples"] or {}
        samples = {
            name: [
                {"doc_id": i, "acc": 1.0, "doc": manager.tasks[name].eval_docs[i]} for i in indices
            ]
            for name, indices in chosen.items()
        }
        results = {t: {"acc,none": 1.0} for t in samples}
        return {"results": results, "samples": samples, "n-samples": {}}

    manager = FakeTaskManager()
    monkeypatch.setattr(lm_eval, "simple_evaluate", simple_evaluate)
    fake_export(tmp_path)
    out = harness.evaluate(str(tmp_path), ["hellaswag", "piqa"], limit=5, task_manager=manager)
    (call,) = calls
    chosen = sample_docs(100, 5, LIMIT_SEED, "hellaswag")
    assert call.get("limit") is None and call["samples"] == {"hellaswag": chosen, "piqa": [0, 1, 2]}
    assert call["tasks"] == [manager.tasks["hellaswag"], manager.tasks["piqa"]]
    recorded = json.loads((tmp_path / "eval_results.json").read_text())
    assert recorded["limit"] == out["limit"] == 5 and recorded["limit_seed"] == LIMIT_SEED
    items = harness.read_items(str(tmp_path))
    assert [r["doc_id"] for r in items["hellaswag"]] == chosen  # the documents' own indices
    with pytest.raises(ValueError, match="holds an evaluation of hellaswag, piqa made with other"):
        harness.evaluate(str(tmp_path), ["piqa"], task_manager=manager)  # every item: refused
    assert len(calls) == 1  # before evaluating
    harness.evaluate(str(tmp_path), ["piqa"], task_manager=manager, replace=True)
    assert calls[-1]["samples"] is None
    assert json.loads((tmp_path / "eval_results.json").read_text())["limit_seed"] is None


@pytest.mark.slow
def test_a_sample_is_read_in_document_order(tmp_path):
    """lm-eval reads a sample in document order and logs its k-th document under the k-th
    index: the indices must be sorted (checked against the installed lm-eval)."""
    rows = [{"goal": f"goal {i}", "sol1": "a", "sol2": "b", "label": i % 2} for i in range(6)]
    path = tmp_path / "piqa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    manager = harness.task_index()
    specs = harness.task_specs(["piqa"], {"piqa": str(path)}, manager)
    loaded = manager.load(specs)
    samples = harness.limit_samples(loaded, 2, LIMIT_SEED)
    tasks = list(loaded["tasks"].values())
    chosen = samples["piqa"]
    assert len(chosen) == 2 and chosen == sorted(chosen)
    got = list(tasks[0].doc_iterator(samples=chosen))
    assert [j for j, _ in got] == [0, 1]
    assert [doc["goal"] for _, doc in got] == [f"goal {i}" for i in chosen]


@pytest.mark.slow
def test_task_documents_are_ascii_filtered_as_training_documents_were(tmp_path):
    """A model trained on ASCII-filtered text is scored on ASCII-filtered items: every text of
    the evaluated documents (nested choices included) loses its non-ASCII characters before the
    task's own processing, the documents changed are counted, and lm-eval groups (loaded again
    by name, unfiltered) are refused."""
    rows = [
        {"goal": "Heat to 212\u00b0F", "sol1": "a caf\u00e9", "sol2": "b", "label": 0},
        {"goal": "plain goal", "sol1": "a", "sol2": "\u201cquoted\u201d", "label": 1},
        {"goal": "plain goal 2", "sol1": "a", "sol2": "b", "label": 0},
    ]
    path = tmp_path / "piqa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    manager = harness.task_index()
    loaded = manager.load(harness.task_specs(["piqa"], {"piqa": str(path)}, manager))
    assert harness.ascii_filter(loaded) == {"piqa": 2}
    task = loaded["tasks"]["piqa"]
    docs = list(task.eval_docs)
    assert [d["goal"] for d in docs] == ["Heat to 212F", "plain goal", "plain goal 2"]
    assert task.doc_to_choice(docs[0]) == ["a caf", "b"] and docs[1]["sol2"] == "quoted"
    assert all(str(v).isascii() for d in docs for v in d.values())
    with pytest.raises(ValueError, match="is an lm-eval group; name its tasks instead"):
        harness.refuse_groups(["mmlu"], manager)


def test_a_name_written_nowhere_in_the_task_folders_is_surely_unknown(tmp_path):
    """The quick check reads the task folders' files as text: a name is refused only where it is
    written nowhere as a whole name, in any file or path (templates under any name included)."""
    (tmp_path / "hellaswag").mkdir()
    (tmp_path / "hellaswag" / "hellaswag.yaml").write_text("task: hellaswag\ntag:\n  - mc\n")
    (tmp_path / "_tpl").write_text("group: read_(general)\ntask:\n  - piqa_x\n")
    (tmp_path / "only_a_path").mkdir()
    (tmp_path / "only_a_path" / "x").write_text("nothing\n")
    files = [str(p) for p in sorted(tmp_path.rglob("*")) if p.is_file()]
    names = ["hellaswag", "mc", "read_(general)", "piqa_x", "only_a_path", "char_probes"]
    assert harness.surely_unknown(names, files) == []  # (char_probes: ours, made here)
    typos = ["hellswag", "piqa", "read", "hellaswag_x", "m"]  # parts of names are no names
    assert harness.surely_unknown([*names, *typos], files) == typos
    with pytest.raises(ValueError, match=r"no task named 'hellswag' \(did you mean hellaswag\?\)"):
        harness.refuse_unknown(["hellswag", "mc"], files)
    with pytest.raises(
        ValueError, match=r"'piqa_y', 'read_\(generl\)' \(did you mean piqa_x, read_\("
    ):
        harness.refuse_unknown(["piqa_y", "read_(generl)"], files)  # (names from a list, a group)
    harness.refuse_unknown(names, files)


def test_without_lm_eval_a_task_name_says_to_install_it(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a)
    )
    with pytest.raises(ValueError, match=r"--tasks: lm-eval is not installed \(pip install -e"):
        harness.refuse_unknown(["hellaswag"])
    harness.refuse_unknown(["embedding_probe", "char_probes"])  # made here: nothing asked
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # (an import of it fails)
    monkeypatch.delitem(sys.modules, "lm_eval.tasks", raising=False)
    with pytest.raises(ValueError, match="the embedding probe alone needs none"):
        harness.task_index()
    monkeypatch.setattr(harness, "_evaluate_steps", lambda *a: "evaluated")
    run = tmp_path / "run"
    (run / "checkpoint" / "step-2").mkdir(parents=True)
    (run / "checkpoint" / "step-2" / ".metadata").write_bytes(b"")
    (run / "run_config.json").write_text(json.dumps({"checkpoint": {"folder": "checkpoint"}}))
    assert harness.evaluate_run(str(run), tasks=["embedding_probe"]) == "evaluated"  # no index


@pytest.mark.slow
def test_a_misspelt_task_is_refused_before_the_hub_is_asked(tmp_path, monkeypatch, capsys):
    """`eval --tasks char_probe` was taken for a hub task: the hub was asked (ten seconds where
    it is not reached) and lm-eval's index built before the name was refused."""
    import prefix_titan.eval as command

    monkeypatch.setattr(command, "offline_unless_reachable", lambda: pytest.fail("hub asked"))
    monkeypatch.setattr(harness, "task_index", lambda: pytest.fail("index built"))
    fake_export(tmp_path)
    with pytest.raises(SystemExit) as e:
        command.main(["--model", str(tmp_path), "--tasks", "char_probe", "--progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--tasks: no task named 'char_probe' (did you mean char_prefix, char_probes" in err


@pytest.mark.slow
def test_every_task_lm_eval_knows_is_written_in_its_task_folder(seed):
    """No false refusal: each name in lm-eval's own index (tasks, groups, tags: 14,713 in the
    lm-eval installed here) is written as a whole name in the files `surely_unknown` reads, which
    therefore never refuses it (a whole name there is a maximal run of NAME characters; a name
    with a space, as some of lm-eval 0.4.9-0.4.12 have, is asked of the check itself)."""
    import random
    import re

    index = harness.task_index()
    written = set()
    for path in harness.task_files():
        with open(path, "rb") as f:
            written.update(re.findall(harness.NAME + rb"+", path.encode() + b"\n" + f.read()))
    missing = [t for t in index.all_tasks if t.encode() not in written]
    assert all(" " in t for t in missing) and harness.surely_unknown(missing) == [], missing[:20]
    sample = random.Random(seed).sample(index.all_tasks, 20)
    assert harness.surely_unknown(sample) == []  # the check itself, on a few of them


@pytest.mark.slow
def test_the_index_with_lm_evals_tasks_read_from_the_cache_is_the_one_lm_eval_builds(
    tmp_path, monkeypatch
):
    """task_index() for lm-eval's tasks: its index and the task, group and tag lists made from it
    equal those of lm-eval's own TaskManager(include_path=TASKS_DIR), both when it builds lm-eval's
    index and writes the cache file and when it reads the file back."""
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("PREFIX_TITAN_CACHE", str(tmp_path))
    built = harness.task_index()
    (cached,) = tmp_path.glob("lm_eval_index-*.pickle")
    read = harness.task_index()
    plain = TaskManager(include_path=harness.TASKS_DIR)
    for field in harness._MANAGER_FIELDS:
        want = getattr(plain, field)
        assert getattr(built, field) == want and getattr(read, field) == want, field
        assert list(getattr(read, field)) == list(want), field  # in the same order
    assert "hellaswag" in read.all_subtasks and "char_spell" in read.all_subtasks
    assert list(tmp_path.iterdir()) == [cached]  # nothing else left there


def test_lm_evals_index_is_read_back_from_its_cache_file_and_rebuilt_after_a_change(
    tmp_path, monkeypatch
):
    """The cache file of lm-eval's index (harness._lm_eval_index, on a folder of two task files):
    written on the first call, read back on the next without parsing a file; an edited file
    reads a file of its own; a file cut short is built again and rewritten whole."""
    from lm_eval.tasks.manager import TaskIndex

    monkeypatch.setenv("PREFIX_TITAN_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "tasks"
    root.mkdir()
    for name in ("one", "two"):
        (root / f"{name}.yaml").write_text(f"task: {name}\ntag: both\ndataset_path: json\n")
    built = harness._lm_eval_index(root)
    assert built == TaskIndex.build([root]) and set(built) == {"one", "two", "both"}
    (first,) = (tmp_path / "cache").iterdir()

    def no_parsing(paths, **kwargs):
        raise AssertionError("parsed again")

    with monkeypatch.context() as m:
        m.setattr(TaskIndex, "build", staticmethod(no_parsing))
        assert harness._lm_eval_index(root) == built
    was = os.stat(root / "two.yaml")
    (root / "two.yaml").write_text("task: two\ndataset_path: json\n")
    edited = harness._lm_eval_index(root)
    assert "both" in edited and edited["both"].tags == {"one"}
    assert len(list((tmp_path / "cache").iterdir())) == 2  # another key: a file of its own
    size = first.stat().st_size
    first.write_bytes(first.read_bytes()[:100])  # cut short
    (root / "two.yaml").write_text("task: two\ntag: both\ndataset_path: json\n")
    os.utime(root / "two.yaml", ns=(was.st_atime_ns, was.st_mtime_ns))  # the first key again
    assert harness._lm_eval_index(root) == built
    assert first.stat().st_size == size  # rewritten whole
    assert len(list((tmp_path / "cache").iterdir())) == 2  # no partial file left


@pytest.mark.parametrize("missing", ["Kind", "TaskIndex", "_all_tags"])
def test_an_lm_eval_laid_out_otherwise_builds_its_whole_index_itself(missing, monkeypatch):
    """Where lm-eval's task manager module lacks what the cached index is merged with (Kind,
    TaskIndex) or a TaskManager lacks one of the fields derived from the index, task_index() for
    lm-eval's tasks is lm-eval's own TaskManager(include_path=TASKS_DIR), the cache unread."""
    import lm_eval.tasks
    from lm_eval.tasks import manager as lm_manager

    made = []

    class Built:
        def __init__(self, include_path=None):
            made.append(include_path)

    ours = types.SimpleNamespace(**dict.fromkeys(harness._MANAGER_FIELDS))
    if missing == "_all_tags":
        delattr(ours, missing)
    else:
        monkeypatch.delattr(lm_manager, missing)
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", Built)
    monkeypatch.setattr(harness, "_lm_eval_index", lambda root: pytest.fail("cache read"))
    assert isinstance(harness._with_lm_eval_tasks(ours), Built)
    assert made == [harness.TASKS_DIR]


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_probe_seed_numpy_cannot_take_is_refused_naming_the_range(seed, capsys):
    from prefix_titan.eval import main

    with pytest.raises(SystemExit) as e:
        main(["--model", "nowhere", "--probe-seed", seed])
    assert e.value.code == 2
    assert (
        f"--probe-seed must be a whole number in [0, 2**32); got {seed}" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "command, args",
    [
        ("export", ["--config", "c.toml", "--out", ""]),
        (
            "export",
            ["--config", "c.toml", "--out", "o", "--checkpoint", ""],
        ),  # (the newest, it was)
        ("embedding_probe", ["run", "--checkpoint", ""]),
        ("runs.checkpoints", ["check", ""]),
        ("prepare", ["--tokenizer", "t", "--out", " "]),
        ("simulate", ["--out", "", "--seeds", "1", "2"]),
        ("report", [""]),
        ("power", ["--from", ""]),
        ("eval", ["--model", ""]),
        ("embedding_probe", [""]),
        ("sweep.launch", ["--sweep-dir", "", "--dry-run"]),
    ],
)
def test_an_empty_path_is_refused_by_every_command(command, args, capsys):
    """An empty --out did the whole export and then failed in a traceback, made prepare end in
    one, and made simulate do nothing with status 0."""
    import importlib

    main = importlib.import_module(f"prefix_titan.{command}").main
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert ": an empty path; give a file or folder" in capsys.readouterr().err


def test_the_task_groups_are_spelled_out_each_task_once():
    """char_probes_blank is spelled out like char_probes: handed to lm-eval as its tag, the
    twins' data files were looked for in the working directory, not beside the probes'."""
    from prefix_titan.evaluation.harness import expand
    from prefix_titan.evaluation.probes import BLANK_TASKS, PROBE_TASKS

    assert expand(["char_probes_blank"]) == BLANK_TASKS
    assert expand(["char_probes", "char_probes_blank"]) == PROBE_TASKS + BLANK_TASKS
    assert expand(["char_count_blank", "char_probes_blank"]) == ["char_count_blank"] + [
        t for t in BLANK_TASKS if t != "char_count_blank"
    ]


def test_a_bad_limit_is_refused(capsys):
    from prefix_titan.eval import main

    with pytest.raises(SystemExit) as e:
        main(["--model", "nowhere", "--limit", "0", "--progress"])
    assert e.value.code == 2
    assert "--limit must be >= 1 (documents per task); got 0" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["0", "-1", "abc", "auto:x", "auto:0"])
def test_a_bad_batch_size_is_refused_with_the_forms_allowed(capsys, size):
    from prefix_titan.eval import main

    with pytest.raises(SystemExit) as e:
        main(["--model", "nowhere", f"--batch-size={size}", "--progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--batch-size must be a whole number >= 1, auto (the largest that fits) or auto:N" in err
    assert f"got {size!r}" in err


def test_probe_words_is_a_shard_folder_or_a_word_list(tmp_path, capsys):
    from prefix_titan.eval import main

    bad = tmp_path / "words.txt"
    bad.write_text("straw 3\nStraw 2\n")
    for where, said in (
        (tmp_path / "missing", "is neither a folder (a shard folder of prepare) nor a file"),
        (bad, "words.txt:2: 'Straw 2' is not a line 'word count'"),
    ):
        with pytest.raises(SystemExit) as e:
            main(["--model", "nowhere", "--probe-words", str(where), "--progress"])
        assert e.value.code == 2
        assert f"--probe-words {where if where == bad else repr(str(where))}" in (
            err := capsys.readouterr().err
        )
        assert said in err, err


def test_a_run_folder_without_an_export_names_the_export_command(tmp_path, capsys):
    from prefix_titan.eval import main

    run = tmp_path / "sweep" / "ce" / "seed1234"
    run.mkdir(parents=True)
    config = {"job": {"config_file": "train_configs/pilot/ce.toml"}, "objective": {}}
    (run / "run_config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit) as e:
        main(["--model", str(run), "--progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "is a run folder, not an exported model: export its newest checkpoint first" in err
    assert (
        f"python -m prefix_titan.export --config train_configs/pilot/ce.toml --job.dump_folder "
        f"{run} --out hf/ce_seed1234\nthen evaluate it with --model hf/ce_seed1234" in err
    )
    assert f"--all-checkpoints {run}" in err


def test_eval_without_progress_shows_no_bar():
    """lm-eval passes tqdm's `disable` itself, which TQDM_DISABLE does not override."""
    script = textwrap.dedent(
        """
        from prefix_titan.eval import quiet
        quiet()
        from tqdm import tqdm
        from tqdm.auto import tqdm as auto
        list(tqdm(range(3), disable=False, desc="explicit"))
        list(auto(range(3), desc="auto"))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr


@pytest.mark.slow
def test_quiet_pytest_names_its_seed():
    """`pytest -q` prints no header, so the seed line comes with the summary."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{ROOT}/tests/test_friction.py::test_a_limit_is_a_seeded_random_sample_not_the_first_documents",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PREFIX_TITAN_TEST_SEED": "7"},
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:]
    assert "test seed base: 7 (" in out.stdout
    assert "PREFIX_TITAN_TEST_SEED=N python -m pytest" in out.stdout


@pytest.mark.parametrize(
    "argv,says",
    [
        (
            ["--confg", "c.toml", "--out", "o"],
            "unrecognized argument --confg; did you mean --config?",
        ),
        (["--config", "c.toml", "--out", "o", "--checkpiont", "s"], "did you mean --checkpoint?"),
        (["--out", "o"], "the following argument is required: --config"),
        (
            ["--config", "c.toml", "--out", "o", "--checkpoint.load_step", "7"],
            "export reads the step named by --checkpoint (RUN/checkpoint/step-N",
        ),
        (
            ["--config", "c.toml", "--out", "o", "--training.steps=7"],
            "--training.steps does not change an export: it reads only job.dump_folder, model.*",
        ),
        (["--config", "c.toml", "--out", "o", "--dtype", "fp16"], "invalid choice: 'fp16'"),
    ],
)
def test_a_misspelt_export_flag_is_named_before_anything_loads(capsys, argv, says):
    from prefix_titan.export import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert says in capsys.readouterr().err


def test_the_report_names_a_missing_folder_and_where_it_wrote(tmp_path, capsys):
    from helpers import make_run

    from prefix_titan.report import main

    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "sweep_pilot")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"'{tmp_path / 'sweep_pilot'}' does not exist" in err
    assert "usage:" not in err  # a refusal is one line, not buried under the usage block
    assert "--help" not in err  # a refused input: the message alone names what to change
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--checkpoints", "0"])  # a usage error: where the options are
    assert capsys.readouterr().err.endswith(
        "(`python -m prefix_titan.report --help` lists the options)\n"
    )
    make_run(tmp_path / "sweep", "ce", {"name": "ce"}, 0.0)
    main([str(tmp_path / "sweep")])
    err = capsys.readouterr().err
    assert f"written to {tmp_path / 'sweep' / 'report' / 'report.md'}" in err
    assert (tmp_path / "sweep" / "report" / "report.md").is_file()
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "sweep"), "--seeds", "1234", "7"])
    assert e.value.code == 2
    assert "--seeds 7: no run has that; the runs have 1234" in capsys.readouterr().err
    main([str(tmp_path / "sweep"), "--seeds", "1234", "--arms", "ce"])
    assert "# Sweep report: 1 arm × 1 seed (1234)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # the folder after the arms is read as an arm
        main(["--arms", "ce", str(tmp_path / "sweep")])
    assert f"give RUNS_DIR before --arms (or end the list with --): '{tmp_path / 'sweep'}'" in (
        capsys.readouterr().err
    )
    main(["--arms", "ce", "--", str(tmp_path / "sweep")])
    out = capsys.readouterr().out
    assert "# Sweep report: 1 arm × 1 seed (1234)" in out and "one run's folder" not in out
    one = tmp_path / "sweep" / "ce" / "seed1234"
    main([str(one), "--out", str(tmp_path / "one")])  # a run's folder, for a sweep's
    assert (
        f"`{one}` is one run's folder (it holds run_config.json): a report compares the arms of a "
        f"sweep, so give the folder that holds the arm folders (here `{tmp_path / 'sweep'}`)"
    ) in capsys.readouterr().out
    alone = shutil.copytree(one, tmp_path / "outputs" / "short")  # a run in no sweep
    main([str(alone), "--out", str(tmp_path / "alone")])
    out = capsys.readouterr().out
    assert "holds the arm folders (a sweep launch writes SWEEP/ARM/seedS: here the run" in out
    assert f"(here `{tmp_path}`)" not in out  # (two folders up: no sweep's folder)


@pytest.mark.parametrize(
    "command, argv, says",
    [
        ("targets", ["--hf-assets-path", "{tmp}/assets", "--token", " x"], "no tokenizer.json"),
        ("export", ["--config", "{tmp}/run.toml", "--out", "{tmp}/hf"], "no such file"),
        ("eval", ["--all-checkpoints", "{tmp}/run", "--tasks", "char_probes"], "no such folder"),
    ],
)
def test_a_missing_file_or_folder_is_named_with_its_flag(tmp_path, capsys, command, argv, says):
    import importlib

    module = importlib.import_module(f"prefix_titan.{command}")
    main = getattr(module, "main", None) or module._main
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"{argv[0]} {argv[1]}: {says}" in err, err
    assert "Traceback" not in err and not os.listdir(tmp_path)  # nothing made on the way


SAMPLE_20 = {"limit": 20, "limit_seed": 1234, "limit_sampling": harness.LIMIT_SAMPLING}


def _run_with_a_filed_step(tmp_path):
    """A run folder with a finished step 40 and the folder its evaluations are filed in
    (RUN/evals/step-40): (run, filed)."""
    run = tmp_path / "run"
    (run / "checkpoint" / "step-40").mkdir(parents=True)
    (run / "checkpoint" / "step-40" / ".metadata").write_bytes(b"")
    record = {"objective": {"name": "ce"}, "checkpoint": {"folder": "checkpoint"}}
    (run / "run_config.json").write_text(json.dumps({**record, "job": {"dump_folder": str(run)}}))
    filed = run / "evals" / "step-40"
    filed.mkdir(parents=True)
    return run, filed


def test_an_evaluation_that_would_contradict_one_in_the_run_folder_is_refused_first(
    tmp_path, monkeypatch, capsys
):
    """An evaluation filed with a run (eval --model of an export, RUN/evals/step-N) and one of
    --all-checkpoints (RUN/hf/step-N) are two files the report reads for one task and step: on
    another --limit sample the second is refused before it evaluates anything, and any other
    difference is said as soon as it is written."""
    import prefix_titan.eval as cli

    run, filed = _run_with_a_filed_step(tmp_path)
    result = {"piqa": {"acc,none": 0.3}}
    (filed / "eval_results.json").write_text(
        json.dumps({"results": result, **SAMPLE_20, "versions": {}})
    )
    calls = []

    def fake_run(run_dir, config, **kwargs):  # what --all-checkpoints writes for step 40
        calls.append(kwargs["limit"])
        out = run / "hf" / "step-40"
        out.mkdir(parents=True, exist_ok=True)
        acc = 0.3 if len(calls) == 1 else 0.31  # the second: as if in another dtype
        results = {"piqa": {"acc,none": acc}}
        (out / "eval_results.json").write_text(
            json.dumps({"results": results, **SAMPLE_20, "versions": {}})
        )

    monkeypatch.setattr(cli, "evaluate_run", fake_run)
    base = ["--all-checkpoints", str(run), "--tasks", "piqa"]
    with pytest.raises(SystemExit):
        cli.main([*base, "--limit", "10"])
    err = capsys.readouterr().err
    assert "holds evaluations this one (10 (--limit-seed 1234)) would contradict" in err
    assert f"piqa at step 40 in {filed / 'eval_results.json'} (20 (--limit-seed 1234))" in err
    assert calls == []  # refused before evaluating
    with pytest.raises(SystemExit):
        cli.main(base)  # every item, where the filed one read 20
    assert "would contradict" in capsys.readouterr().err and calls == []
    cli.main([*base, "--limit", "20"])  # the same sample: the same results, no conflict
    assert calls == [20]
    with pytest.raises(SystemExit):
        cli.main([*base, "--limit", "20"])
    err = capsys.readouterr().err
    assert "the results are written, but: run folder" in err
    assert "holds two evaluations of piqa at step 40 that differ" in err


def test_an_evaluation_filed_again_with_its_run_brings_every_tasks_items(tmp_path):
    """An export evaluated on piqa, its copy in the run folder removed, then evaluated on
    arc_easy: the model folder's results name both tasks, and so does the run's new copy, with
    both tasks' items (it used to hold piqa's results without its items: a copy the report and
    the next evaluation refused as interrupted)."""
    from prefix_titan.evaluation.harness import ITEM_DIGESTS
    from prefix_titan.runs.folder import EXPORT_RECORD, read_json

    run, model = tmp_path / "run", tmp_path / "hf" / "m"
    run.mkdir()
    model.mkdir(parents=True)
    (model / EXPORT_RECORD).write_text(json.dumps({"run_dir": str(run), "step": 3}))

    def evaluate(task, acc):
        results = {"model": str(model), "tasks": [task], "results": {task: {"acc,none": acc}}}
        items = {task: [{"doc_id": i, "gold": 0, "logliks": [-1.0, -2.0 - i]} for i in range(3)]}
        written = harness.write_evaluation(str(model), results, items)
        return harness.file_with_run(str(model), written, items)

    filed = evaluate("piqa", 0.5)
    import shutil

    shutil.rmtree(run / "evals")  # (moved out of the run folder, as a refusal advises)
    # an evaluation interrupted between its items and its results left a task's items behind:
    # no task of these results, so not read
    (model / "eval_items" / "hellaswag.jsonl").write_text('{"doc_id": 0}\n')
    assert evaluate("arc_easy", 0.25) == filed
    results = read_json(filed, expect=dict)
    assert set(results["results"]) == {"piqa", "arc_easy"}
    items = harness.read_items(os.path.dirname(filed), results[ITEM_DIGESTS])
    assert set(items) == {"piqa", "arc_easy"}
    assert items == harness.read_items(str(model), tasks=["piqa", "arc_easy"])


def test_an_export_of_a_run_on_shards_takes_its_probe_words_from_them(tmp_path, capsys):
    """`eval --model` of an export builds the probes from the shards its run trained on, as
    `--all-checkpoints` does (the embedded corpus's words made other probes, which the run
    folder then held beside the others as a contradiction); named words, tasks without probes,
    a run without shards or no run keep what was given; shards not found from here are refused."""
    from prefix_titan.evaluation.harness import ProbeOptions, probes_of_export
    from prefix_titan.runs.folder import EXPORT_RECORD, RUN_CONFIG

    run, model, shards = tmp_path / "run", tmp_path / "hf", tmp_path / "shards"
    for folder in (run, model, shards):
        folder.mkdir()
    (model / EXPORT_RECORD).write_text(json.dumps({"run_dir": str(run), "step": 3}))
    training = {"dataset": "fineweb_edu_ascii_tokens", "dataset_path": str(shards)}
    (run / RUN_CONFIG).write_text(json.dumps({"training": training}))
    given = ProbeOptions(items=300, seed=7)
    got = probes_of_export(str(model), given, ["char_spell", "piqa"])
    assert got == ProbeOptions(str(shards), 300, 7, given.shots)
    assert f"words from the run's training shards {shards}" in capsys.readouterr().out
    named = ProbeOptions("words.txt")
    assert probes_of_export(str(model), named, ["char_spell"]) is named
    assert probes_of_export(str(model), given, ["piqa"]) is given
    (run / RUN_CONFIG).write_text(json.dumps({"training": {"dataset": "embedded_docs"}}))
    assert probes_of_export(str(model), given, ["char_spell"]) is given
    (run / RUN_CONFIG).write_text(json.dumps({"training": {**training, "dataset_path": "gone"}}))
    with pytest.raises(ValueError, match="the run trained on the shards 'gone'"):
        probes_of_export(str(model), given, ["char_spell"])
    (model / EXPORT_RECORD).write_text(json.dumps({"run_dir": None, "checkpoint": "x"}))
    assert probes_of_export(str(model), given, ["char_spell"]) is given


def test_an_evaluation_whose_probes_are_built_otherwise_is_refused_first(
    tmp_path, monkeypatch, capsys
):
    """A character probe filed with a run on probes built otherwise (other words, items, seed
    or shots) is a contradiction found before evaluating, as another --limit sample is; results
    that predate the probes' record, and other tasks, are not compared on probes."""
    import prefix_titan.eval as cli
    from prefix_titan.evaluation.harness import ProbeOptions

    run, filed = _run_with_a_filed_step(tmp_path)
    made = asdict(ProbeOptions(items=100, seed=5))
    results = {"char_spell": {"acc,none": 0.3}, "piqa": {"acc,none": 0.5}}
    (filed / "eval_results.json").write_text(
        json.dumps({"results": results, "limit": None, "probes": made, "versions": {}})
    )
    calls = []
    monkeypatch.setattr(cli, "evaluate_run", lambda run_dir, config, **kw: calls.append(kw))
    base = ["--all-checkpoints", str(run), "--tasks"]
    for other in (["--probe-seed", "6"], ["--probe-items", "99"], ["--probe-shots", "0"]):
        with pytest.raises(SystemExit):
            cli.main([*base, "char_spell", "--probe-items", "100", "--probe-seed", "5", *other])
        err = capsys.readouterr().err
        assert f"char_spell at step 40 in {filed / 'eval_results.json'} (probes of words" in err
        assert "--probe-* settings" in err and calls == []
    cli.main([*base, "char_spell", "piqa", "--probe-items", "100", "--probe-seed", "5"])
    cli.main([*base, "piqa", "--probe-seed", "6"])  # no probe among the tasks
    assert len(calls) == 2
    # results that predate the probes' record: not compared on probes
    (filed / "eval_results.json").write_text(json.dumps({"results": results, "versions": {}}))
    cli.main([*base, "char_spell", "--probe-seed", "6"])
    assert len(calls) == 3


def test_a_task_read_whole_under_a_limit_contradicts_no_evaluation_of_the_same_limit(tmp_path):
    """A --limit at or above a task's item count reads it whole (runs.items_read): evaluating it
    again with that limit, or with none, contradicts nothing filed; a smaller limit does."""
    from prefix_titan.eval import contradicted

    run, filed = _run_with_a_filed_step(tmp_path)
    counted = {"piqa": {"original": 30, "effective": 30}}
    (filed / "eval_results.json").write_text(
        json.dumps(
            {"results": {"piqa": {"acc,none": 0.5}}, **SAMPLE_20, "limit": 50, "n_samples": counted}
        )
    )
    for limit in (50, 30, None):
        settings = {**SAMPLE_20, "limit": limit}
        assert contradicted(str(run), [40], ["piqa"], settings, set()) == [], limit
    (found,) = contradicted(str(run), [40], ["piqa"], {**SAMPLE_20, "limit": 29}, set())
    assert found == f"piqa at step 40 in {filed / 'eval_results.json'} (every item)"


def test_a_misspelt_run_folder_is_named_as_missing_not_as_empty(tmp_path):
    from prefix_titan.evaluation.export import latest_step

    with pytest.raises(ValueError, match="the run folder .*seed124' does not exist: check job"):
        latest_step(str(tmp_path / "seed124" / "checkpoint"))
    (tmp_path / "seed1234").mkdir()
    with pytest.raises(ValueError, match="no finished step-N checkpoint folders in"):
        latest_step(str(tmp_path / "seed1234" / "checkpoint"))


def test_an_export_through_another_arms_config_says_which_arm_it_files_under(tmp_path, capsys):
    """The objective does not enter an export: a config of another arm over a run folder exports
    that run's weights and files them as its arm, and says so."""
    import json
    from types import SimpleNamespace

    from prefix_titan.evaluation.export import _note_other_objective
    from prefix_titan.objectives import ObjectiveSpec

    run = tmp_path / "seed1234"
    run.mkdir()
    prefix = ObjectiveSpec("prefix", tau=0.5)
    (run / "run_config.json").write_text(json.dumps({"objective": prefix.objective()}))

    def config(spec):
        return SimpleNamespace(job=SimpleNamespace(dump_folder=str(run)), objective=spec)

    _note_other_objective(config(ObjectiveSpec("ce")))
    assert (
        f"note: the config names objective ce, the run {run} trained objective prefix_tau0.5: "
        "the export is of that run's weights and its evaluation is filed as prefix_tau0.5"
    ) in capsys.readouterr().err
    _note_other_objective(config(ObjectiveSpec("prefix", tau=0.5)))
    assert capsys.readouterr().err == ""


def test_a_limit_sample_keeps_the_tasks_balance_of_answers():
    """A --limit sample of a multiple-choice task is drawn in proportion to its gold answers:
    on a balanced probe a model that always gives one answer scores chance on the sample (within
    one item), where a draw regardless of the answers gave it 0.50 on 30 items of a 4-way probe;
    an unbalanced task keeps its proportions; the blank twin draws the same items."""
    import collections

    golds = [i % 4 for i in range(2000)]
    worst_random = 0.0
    for seed in range(40):
        for limit in (3, 10, 30, 101):
            s = sample_docs(2000, limit, seed, "char_count", golds)
            assert len(s) == limit == len(set(s)) and s == sorted(s)
            counts = collections.Counter(golds[i] for i in s)
            assert max(counts.values()) - min(counts[g] for g in range(4)) <= 1, counts
            assert s == sample_docs(2000, limit, seed, "char_count_blank", golds)
            draw = collections.Counter(
                golds[i] for i in sample_docs(2000, limit, seed, "char_count")
            )
            worst_random = max(worst_random, max(draw.values()) / limit)
    assert worst_random > 0.4  # what stratifying removes: some random draws are far from 1/4
    skewed = [0] * 1500 + [1] * 500
    for seed in range(20):
        s = sample_docs(2000, 40, seed, "piqa", skewed)
        assert collections.Counter(skewed[i] for i in s) == {0: 30, 1: 10}
    assert sample_docs(2000, 40, 1, "char_spell", golds) != sample_docs(
        2000, 40, 2, "char_spell", golds
    )
    with pytest.raises(ValueError, match="3 golds for 2000 documents"):
        sample_docs(2000, 40, 1, "piqa", [0, 1, 0])


def test_the_limit_sample_reads_the_answers_of_multiple_choice_tasks():
    """task_golds takes each document's gold as lm-eval's scoring does: the target index, a
    target text's index among the choices, with alternative contexts (WinoGrande) the context's
    index; none where a gold is a text not offered, several golds or the task not multiple
    choice (the sample then drawn regardless of the answers)."""

    class Choice(FakeTask):
        OUTPUT_TYPE = "multiple_choice"

        def doc_to_target(self, doc):
            return int(doc["word"][1:]) % 4

    class Worded(Choice):
        def doc_to_choice(self, doc):
            return ["w0", "w1", "w2", "w3"] if int(doc["word"][1:]) < 4 else [doc["word"], "x"]

        def doc_to_target(self, doc):
            return doc["word"]

    class Contexts(Choice):
        multiple_input = 2  # lm-eval's: doc_to_text gives an index, the target is shared

        def doc_to_text(self, doc):
            return int(doc["word"][1:]) % 2

        def doc_to_target(self, doc):
            return " had more items."

    class Unoffered(Worded):
        def doc_to_choice(self, doc):
            return ["a", "b"]

    class Several(Choice):
        def doc_to_target(self, doc):
            return [0, 1]

    assert harness.task_golds(Choice(8)) == [0, 1, 2, 3, 0, 1, 2, 3]
    assert harness.task_golds(Worded(8)) == [0, 1, 2, 3, 0, 0, 0, 0]
    assert harness.task_golds(Contexts(6)) == [0, 1, 0, 1, 0, 1]
    assert harness.task_golds(Unoffered(8)) is None
    assert harness.task_golds(Several(8)) is None
    assert harness.task_golds(FakeTask(8)) is None  # not multiple choice


def test_an_evaluation_on_an_older_sample_is_not_taken_for_a_new_one():
    from prefix_titan.sweep.runs import items_read

    new = {"limit": 30, "limit_seed": 1234, "limit_sampling": harness.LIMIT_SAMPLING}
    old = {"limit": 30, "limit_seed": 1234}
    assert items_read(new) == "30 (--limit-seed 1234)"
    assert items_read(old) == "30 (--limit-seed 1234, drawn regardless of the answers)"
    assert items_read({"limit": 30}) == "30 (the first 30)" and items_read({"limit": None}) is None
    # a task of fewer items than the limit was read whole (the report notes no sample for it)
    counted = {**new, "n_samples": {"piqa": {"original": 30, "effective": 30}}}
    assert items_read(counted, "piqa") is None
    assert items_read({**counted, "limit": 29}, "piqa") == "29 (--limit-seed 1234)"
    assert items_read(counted, "hellaswag") == "30 (--limit-seed 1234)"  # not counted
    # the embedding probe reads every token vector whatever the limit of the file it is in (an
    # evaluation of it alone records none): the report and eval take the two as one sample
    assert items_read(new, "embedding_probe") is None


def test_evaluating_other_tasks_later_keeps_the_earlier_ones(tmp_path, monkeypatch):
    """One results file per model: an evaluation of other tasks with the same settings keeps the
    earlier tasks (a task evaluated again is replaced); one with other settings (another --limit
    sample) is refused, naming the file, the tasks it would lose and the settings, unless
    replace: then the earlier evaluation is replaced whole, its items too."""
    from prefix_titan.evaluation.harness import (
        EVAL_ITEMS,
        EVAL_RESULTS,
        ProbeOptions,
        evaluation_settings,
        read_items,
        write_evaluation,
    )

    def evaluation(tasks, acc, limit=None, items=2000):
        results = {
            "tasks": tasks,
            **evaluation_settings(limit, LIMIT_SEED, ProbeOptions(items=items), tasks),
            "results": {t: {"acc,none": acc} for t in tasks},
            "versions": {t: 1.0 for t in tasks},
            "n_samples": {},
            "chance": {t: 0.25 for t in tasks},
        }
        return results, {t: [{"doc_id": 0, "acc": acc}] for t in tasks}

    def on_file():
        data = json.loads((tmp_path / EVAL_RESULTS).read_text())
        return {t: m["acc,none"] for t, m in data["results"].items()}, data["tasks"]

    write_evaluation(str(tmp_path), *evaluation(["piqa", "char_spell"], 0.5))
    write_evaluation(str(tmp_path), *evaluation(["hellaswag"], 0.3))
    assert on_file() == (
        {"piqa": 0.5, "char_spell": 0.5, "hellaswag": 0.3},
        ["piqa", "char_spell", "hellaswag"],
    )
    write_evaluation(str(tmp_path), *evaluation(["piqa"], 0.6))  # again: replaced, others kept
    assert on_file()[0] == {"char_spell": 0.5, "hellaswag": 0.3, "piqa": 0.6}
    assert sorted(read_items(str(tmp_path))) == ["char_spell", "hellaswag", "piqa"]
    with pytest.raises(ValueError) as e:
        write_evaluation(str(tmp_path), *evaluation(["piqa"], 0.7, limit=30))
    assert str(e.value).startswith(
        f"{tmp_path / EVAL_RESULTS} holds an evaluation of char_spell, hellaswag, piqa made with "
        "other settings (limit None, here 30; limit_seed None, here 1234; limit_sampling None, "
        f"here {harness.LIMIT_SAMPLING!r})"
    )
    assert "or pass --replace to replace it whole" in str(e.value)
    assert on_file()[0]["piqa"] == 0.6  # nothing written
    write_evaluation(str(tmp_path), *evaluation(["piqa"], 0.7, limit=30), replace=True)
    assert on_file() == ({"piqa": 0.7}, ["piqa"])
    assert sorted(p.name for p in (tmp_path / EVAL_ITEMS).iterdir()) == ["piqa.jsonl"]
    data = json.loads((tmp_path / EVAL_RESULTS).read_text())
    assert read_items(str(tmp_path), data["item_sha256"])["piqa"] == [{"doc_id": 0, "acc": 0.7}]

    # killed between the items and the results: the earlier results disown the new items
    import prefix_titan.evaluation.harness as module

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        write_evaluation(str(tmp_path), *evaluation(["piqa"], 0.9, limit=30))
    with pytest.raises(ValueError) as e:
        read_items(str(tmp_path), data["item_sha256"])
    assert str(e.value) == (
        f"{tmp_path / EVAL_ITEMS / 'piqa.jsonl'} is not the items file that "
        f"{tmp_path / EVAL_RESULTS} records (an evaluation was interrupted between writing its "
        "items and its results): evaluate that model again with --replace"
    )
    (tmp_path / EVAL_ITEMS / "piqa.jsonl").unlink()
    with pytest.raises(ValueError, match="records the items of piqa, but .* lacks them"):
        read_items(str(tmp_path), data["item_sha256"])
    # killed while adding a task: its items, which the results never recorded, are refused
    added = tmp_path / "added"
    monkeypatch.undo()
    write_evaluation(str(added), *evaluation(["piqa"], 0.5))
    monkeypatch.setattr(module, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        write_evaluation(str(added), *evaluation(["hellaswag"], 0.3))
    data = json.loads((added / EVAL_RESULTS).read_text())
    with pytest.raises(ValueError, match="hellaswag.jsonl is not the items file that"):
        read_items(str(added), data["item_sha256"])
    monkeypatch.undo()

    # Results written before the digests: a later evaluation adds its task, and the earlier
    # items are taken as they are (read, not refused)
    legacy = tmp_path / "legacy"
    write_evaluation(str(legacy), *evaluation(["piqa"], 0.5))
    data = json.loads((legacy / EVAL_RESULTS).read_text())
    del data["item_sha256"]
    (legacy / EVAL_RESULTS).write_text(json.dumps(data))
    assert sorted(read_items(str(legacy), data.get("item_sha256"))) == ["piqa"]
    write_evaluation(str(legacy), *evaluation(["hellaswag"], 0.3))
    data = json.loads((legacy / EVAL_RESULTS).read_text())
    assert sorted(data["item_sha256"]) == ["hellaswag", "piqa"]
    assert sorted(read_items(str(legacy), data["item_sha256"])) == ["hellaswag", "piqa"]

    # The probes' settings decide only the probes' items: downstream tasks first, then probes
    # with settings of their own, and back; a second probe evaluation with others is refused.
    folder = tmp_path / "probed"
    write_evaluation(str(folder), *evaluation(["piqa"], 0.5))
    assert json.loads((folder / EVAL_RESULTS).read_text())["probes"] is None
    write_evaluation(str(folder), *evaluation(["char_spell"], 0.4, items=200))
    write_evaluation(str(folder), *evaluation(["hellaswag"], 0.3))
    data = json.loads((folder / EVAL_RESULTS).read_text())
    assert sorted(data["results"]) == ["char_spell", "hellaswag", "piqa"]
    assert data["probes"]["items"] == 200  # the kept probe's own
    with pytest.raises(ValueError, match=r"probes \{.*'items': 200.*here \{.*'items': 2000"):
        write_evaluation(str(folder), *evaluation(["char_count"], 0.4))


def test_a_run_is_not_evaluated_over_an_evaluation_on_other_items(tmp_path, monkeypatch):
    """--all-checkpoints checks every step's results file before the first step is evaluated."""
    from prefix_titan.evaluation.harness import EVAL_RESULTS, EXPORTS, evaluate_run

    run = tmp_path / "run"
    for step in (20, 40):
        (run / "checkpoint" / f"step-{step}").mkdir(parents=True)
        (run / "checkpoint" / f"step-{step}" / ".metadata").write_bytes(b"")
    record = {"checkpoint": {"folder": "checkpoint"}, "training": {}}
    (run / "run_config.json").write_text(json.dumps(record))
    (run / EXPORTS / "step-40").mkdir(parents=True)
    earlier = {"results": {"char_spell": {"acc,none": 0.3}}, **SAMPLE_20, "probes": None}
    (run / EXPORTS / "step-40" / EVAL_RESULTS).write_text(json.dumps(earlier))
    monkeypatch.setattr(harness, "_evaluate_steps", lambda *a: pytest.fail("evaluated"))
    manager = type("Index", (), {"all_tasks": ["char_spell", *harness.DEFAULT_TASKS]})()
    with pytest.raises(ValueError, match="no task named 'char_spel' \\(did you mean char_spell"):
        evaluate_run(str(run), task_manager=manager, tasks=["char_spel"])  # before any export
    with pytest.raises(ValueError) as e:
        evaluate_run(str(run), task_manager=manager, tasks=["char_spell"], limit=None)
    assert "this evaluation would replace earlier ones made with other settings:" in str(e.value)
    assert f"{run / EXPORTS / 'step-40' / EVAL_RESULTS} holds an evaluation of char_spell" in str(
        e.value
    )
    monkeypatch.setattr(harness, "_evaluate_steps", lambda *a: "evaluated")
    assert evaluate_run(str(run), task_manager=manager, limit=None, replace=True) == "evaluated"
    # a sweep folder given for a run: its runs named
    (tmp_path / "sweep" / "ce" / "seed1").mkdir(parents=True)
    (tmp_path / "sweep" / "ce" / "seed1" / "run_config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"'.*sweep' is a sweep folder, not a run's \(ce/seed1\)"):
        evaluate_run(str(tmp_path / "sweep"), task_manager=manager)
    # an exported model given for a run: --model named
    (tmp_path / "hf").mkdir()
    fake_export(tmp_path / "hf")
    with pytest.raises(
        ValueError, match=r"'.*hf' is an exported model, not a run folder: .*--model"
    ):
        evaluate_run(str(tmp_path / "hf"), task_manager=manager)


def test_all_checkpoints_last_evaluates_the_runs_last_checkpoints_only(
    tmp_path, monkeypatch, capsys
):
    """The report averages a run's last checkpoints (3 of the pilot's 6): `--last N` exports and
    evaluates those only (half the evaluation's cost), and the learning curve keeps the steps
    evaluated before with the same settings beside them (not one evaluated with another --limit
    sample: the curve compares like with like)."""
    import prefix_titan.eval as command
    from prefix_titan.evaluation import export as exporting
    from prefix_titan.evaluation.harness import EVAL_CURVE, EVAL_RESULTS, EXPORTS, evaluate_run

    run = tmp_path / "run"
    for step in (20, 40, 60, 80):
        (run / "checkpoint" / f"step-{step}").mkdir(parents=True)
        (run / "checkpoint" / f"step-{step}" / ".metadata").write_bytes(b"")
    record = {
        "checkpoint": {"folder": "checkpoint"},
        "model": {"flavor": "tiny", "hf_assets_path": "x"},
        "training": {"seq_len": 8},
    }
    (run / "run_config.json").write_text(json.dumps(record))
    (run / EXPORTS / "step-20").mkdir(parents=True)  # evaluated before
    fake_export(run / EXPORTS / "step-20")
    versions = {"versions": {"piqa": f"1.0 {harness.ASCII_MARK}"}}
    unfiltered = {"arc_easy": {"acc,none": 0.3}}  # (scored before the ASCII filter: left out)
    (run / EXPORTS / "step-20" / EVAL_RESULTS).write_text(
        json.dumps({"results": {"piqa": {"acc,none": 0.2}, **unfiltered}, **versions})
    )
    (run / EXPORTS / "step-40").mkdir(parents=True)  # evaluated before, on a --limit sample
    fake_export(run / EXPORTS / "step-40")
    sampled = {"limit": 5, "limit_seed": LIMIT_SEED, "limit_sampling": harness.LIMIT_SAMPLING}
    (run / EXPORTS / "step-40" / EVAL_RESULTS).write_text(
        json.dumps({**sampled, "results": {"piqa": {"acc,none": 0.9}}, **versions})
    )
    evaluated = []

    def export_run(*args, **kwargs):
        os.makedirs(args[4])
        open(os.path.join(args[4], "config.json"), "w").write("{}")

    def evaluate(out, **kwargs):
        evaluated.append(os.path.basename(out))
        results = {"results": {t: {"acc,none": 0.5} for t in kwargs["tasks"]}}
        marked = {t: f"1.0 {harness.ASCII_MARK}" for t in kwargs["tasks"]}
        open(os.path.join(out, EVAL_RESULTS), "w").write(
            json.dumps({**results, "versions": marked})
        )
        return {**results, "chance": {}}

    monkeypatch.setattr(exporting, "export_run", export_run)
    monkeypatch.setattr(harness, "evaluate", evaluate)
    manager = type("Index", (), {"all_tasks": ["piqa", "arc_easy"], "load": lambda s, t: None})()
    tasks = ["piqa", "arc_easy"]
    evaluate_run(str(run), tasks=tasks, task_manager=manager, last=2)  # (read from the hub)
    assert evaluated == ["step-60", "step-80"]
    said = capsys.readouterr().out
    assert "the last 2 of the run's 4 checkpoints: step-60, step-80" in said
    assert "note: step 20 (arc_easy), 40 evaluated before with other settings" in said
    curve = json.loads((run / EVAL_CURVE).read_text())
    assert {s: c["piqa"]["acc,none"] for s, c in curve.items()} == {"20": 0.2, "60": 0.5, "80": 0.5}
    assert "arc_easy" not in curve["20"] and curve["80"]["arc_easy"]["acc,none"] == 0.5
    for args, said in (
        (["--all-checkpoints", str(run), "--last", "0"], "--last must be >= 1"),
        (["--model", str(run), "--last", "2"], "--last is for --all-checkpoints"),
    ):
        with pytest.raises(SystemExit):
            command.main(args)
        assert said in capsys.readouterr().err


def test_the_hubs_datasets_are_read_before_any_checkpoint_is_exported(tmp_path, monkeypatch):
    """`eval --all-checkpoints` with hub tasks it cannot have (offline, not in the cache) ends
    before exporting a checkpoint (it exported them all, about 2 GB each at 500M, then failed);
    with every step exported, or the tasks read from --data-dir, the hub is not asked first."""
    from prefix_titan.evaluation import export as exporting

    asked, exported = [], []

    class Index:
        def load(self, tasks):
            asked.append(tasks)
            raise ConnectionError("the hub is unreachable")

    monkeypatch.setattr(exporting, "export_run", lambda *a, **k: exported.append(a))
    rc = {"model": {"flavor": "tiny", "hf_assets_path": "x"}, "training": {"seq_len": 8}}
    steps = [str(tmp_path / "checkpoint" / "step-2")]
    kwargs = {"tasks": ["piqa", "char_spell"], "task_manager": Index()}
    with pytest.raises(ConnectionError):
        harness._evaluate_steps(str(tmp_path), None, rc, "checkpoint", steps, kwargs)
    assert asked == [["piqa"]] and exported == []
    (tmp_path / "hf" / "step-2").mkdir(parents=True)
    fake_export(tmp_path / "hf" / "step-2")
    monkeypatch.setattr(harness, "evaluate", lambda out, **k: pytest.skip("reached evaluate"))
    piqa = {"goal": "To open a file,", "sol1": "call open.", "sol2": "call close.", "label": 0}
    (tmp_path / "piqa.jsonl").write_text(json.dumps(piqa) + "\n")
    for given in (kwargs, {**kwargs, "data_dir": str(tmp_path)}):
        with pytest.raises(pytest.skip.Exception):
            harness._evaluate_steps(str(tmp_path), None, rc, "checkpoint", steps, dict(given))
        assert asked == [["piqa"]]  # (not asked again)
        (tmp_path / "hf" / "step-2" / "config.json").unlink(missing_ok=True)  # next: unexported
    assert len(exported) == 1


def test_the_printed_table_gives_the_probes_calibrated_by_their_blank_twins():
    """A model that answers from what it prefers without the word scores the same on a probe
    and on its blank twin: the printed table says what is left once that preference is
    cancelled item by item (it printed the two plain accuracies only)."""
    results = {
        "results": {"char_count": {"acc,none": 0.4}, "char_count_blank": {"acc,none": 0.4}},
        "chance": {"char_count": 1 / 3, "char_count_blank": 1 / 3},
        "calibrated": {"char_count": 0.3125},
    }
    text = harness.table(results)
    assert text.splitlines()[-1] == (
        "calibrated by the blank twins (what the model prefers without the word cancelled item by "
        "item; chance as above): char_count 0.3125"
    )
    assert "calibrated" not in harness.table({**results, "calibrated": {}})


def test_an_evaluation_of_an_export_whose_run_is_being_written_says_so_before_it_evaluates(
    tmp_path, monkeypatch, capsys
):
    """eval --model of an export whose run a live process writes (training on) evaluates, but
    its copy with the run is refused at the end: it says so before the evaluation, not only
    after it (at 500M, half an hour of evaluation later)."""
    import types

    from prefix_titan.runs.folder import EXPORT_RECORD

    run, model = tmp_path / "run", tmp_path / "hf" / "m"
    run.mkdir()
    model.mkdir(parents=True)
    fake_export(model)
    (model / EXPORT_RECORD).write_text(json.dumps({"run_dir": str(run), "step": 3}))
    said = []

    def fake_harness(*args, **kwargs):
        said.append(capsys.readouterr().err)
        return {"results": {"piqa": {"acc,none": 0.5}}, "samples": {}}

    monkeypatch.setattr(harness, "_harness", fake_harness)
    manager = types.SimpleNamespace(all_tasks=["piqa"], task_index={})
    holder = _evaluate_while_written(run, model, manager)
    assert f"is being written by pid {holder.pid}" in said[0], said
    assert "their copy with the run is refused unless it has finished by then" in said[0]
    harness.evaluate(str(model), ["piqa"], task_manager=manager, replace=True)
    assert "being written" not in said[1]


def _evaluate_while_written(run, model, manager):
    """An evaluation of piqa of `model`, exported from `run`, while a live process holds the
    run's writer's lock: its filing with the run refused. Returns the holder (ended)."""
    from helpers import holding_lock

    holder = holding_lock(run)
    try:
        with pytest.raises(ValueError, match="run the same eval again once that writer"):
            harness.evaluate(str(model), ["piqa"], task_manager=manager)
    finally:
        holder.kill()
        holder.wait()
    return holder


def _fake_harness(monkeypatch) -> list:
    """lm-eval's part of an evaluation stood in for: each task scored 0.5, at the version this
    package evaluates a probe at (an lm-eval task on ASCII-filtered documents); returns the list
    the tasks of each call are appended to."""
    asked = []

    def fake_harness(model_dir, tasks, *args):
        asked.append(list(tasks))
        versions = {t: harness.current_version(t) or f"1.0 {harness.ASCII_MARK}" for t in tasks}
        results = {t: {"acc,none": 0.5} for t in tasks}
        return {"results": results, "samples": {}, "versions": versions}

    monkeypatch.setattr(harness, "_harness", fake_harness)
    return asked


def test_an_evaluation_run_again_after_its_filing_was_refused_files_it_without_evaluating(
    tmp_path, monkeypatch, capsys
):
    """eval --model of an export whose run was being written keeps its results in the model
    folder and refuses their copy with the run; the same eval run again once the writer has
    finished files them: the tasks the model folder holds with these settings are kept, not
    evaluated again (at 500M, half an hour each), unless --replace."""
    import types

    from prefix_titan.runs.folder import EVAL_RESULTS, EVALS, EXPORT_RECORD

    run, model = tmp_path / "run", tmp_path / "hf" / "m"
    run.mkdir()
    model.mkdir(parents=True)
    fake_export(model)
    (model / EXPORT_RECORD).write_text(json.dumps({"run_dir": str(run), "step": 3}))
    asked = _fake_harness(monkeypatch)
    manager = types.SimpleNamespace(all_tasks=["piqa", "arc_easy"], task_index={})
    _evaluate_while_written(run, model, manager)
    filed = run / EVALS / "step-3" / EVAL_RESULTS
    assert not filed.exists() and asked == [["piqa"]]
    capsys.readouterr()
    results = harness.evaluate(str(model), ["piqa"], task_manager=manager)
    assert asked == [["piqa"]], asked  # not evaluated again
    assert f"piqa evaluated already in {model} with these settings, kept" in (
        capsys.readouterr().err
    )
    assert json.loads(filed.read_text())["results"] == {"piqa": {"acc,none": 0.5}}
    assert results["results"] == {"piqa": {"acc,none": 0.5}}  # (the printed table's)
    harness.evaluate(str(model), ["piqa", "arc_easy"], task_manager=manager)
    assert asked[-1] == ["arc_easy"], asked  # only the task not held
    harness.evaluate(str(model), ["piqa"], task_manager=manager, replace=True)
    assert asked[-1] == ["piqa"], asked


def test_the_limit_decides_nothing_for_tasks_it_does_not_sample(tmp_path, monkeypatch):
    """The character probes are built with the limit's number of items (at least 30) and read
    whole, and the embedding probe reads every vector: probes built alike at --limit 5 and 30, or
    with another --limit-seed, are one evaluation's (they refused each other), while two samples
    of an lm-eval task still are not; a sampled task's limit stays recorded beside probes
    evaluated later."""
    import types

    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    from prefix_titan.runs.folder import EVAL_RESULTS

    model = tmp_path / "m"
    model.mkdir()
    fake_export(model)
    Tokenizer(WordLevel({"a": 0}, unk_token="a")).save(str(model / "tokenizer.json"))
    asked = _fake_harness(monkeypatch)
    manager = types.SimpleNamespace(all_tasks=["char_spell", "piqa"], task_index={})
    monkeypatch.chdir(tmp_path)
    evaluate = functools.partial(harness.evaluate, "m", task_manager=manager)
    evaluate(["char_spell"], 5)
    evaluate(["char_spell"], 30, limit_seed=7)  # the same probes: kept, not refused
    assert asked == [["char_spell"]], asked
    evaluate(["piqa"], 30)
    recorded = json.loads((model / EVAL_RESULTS).read_text())
    assert (recorded["limit"], set(recorded["results"])) == (30, {"char_spell", "piqa"})
    assert recorded["model"] == str(model)  # the folder, not the path as typed
    evaluate(["char_spell"], 5, replace=True)  # probes evaluated again: piqa's sample kept
    recorded = json.loads((model / EVAL_RESULTS).read_text())
    assert recorded["limit"] == 30 and recorded["limit_seed"] == harness.LIMIT_SEED, recorded
    with pytest.raises(ValueError, match="limit 30, here 40"):
        evaluate(["piqa"], 40)
    with pytest.raises(ValueError, match="made with other settings"):
        evaluate(["char_spell"], 40)  # probes of 40 items: not the 30-item ones held


def test_a_limit_below_the_probes_fewest_items_says_how_many_they_are_built_with(
    tmp_path, monkeypatch, capsys
):
    """--limit 5 reads 5 documents of an lm-eval task, and builds the character probes with their
    fewest items (30): said, where it was silent."""
    import types

    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    from prefix_titan.evaluation.probes import MIN_ITEMS

    model = tmp_path / "m"
    model.mkdir()
    fake_export(model)
    Tokenizer(WordLevel({"a": 0}, unk_token="a")).save(str(model / "tokenizer.json"))
    monkeypatch.setattr(
        harness, "_harness", lambda *a, **k: {"results": {"char_spell": {}}, "samples": {}}
    )
    manager = types.SimpleNamespace(all_tasks=["char_spell", "piqa"], task_index={})
    for limit, said in ((5, True), (MIN_ITEMS, False)):
        harness.evaluate(str(model), ["char_spell"], limit, task_manager=manager, replace=True)
        err = capsys.readouterr().err
        assert (f"--limit {limit} reads {limit} documents" in err) is said, err
        assert (f"built with {MIN_ITEMS} items each, their fewest" in err) is said
    harness.evaluate(str(model), ["piqa"], 5, task_manager=manager, replace=True)
    assert "their fewest" not in capsys.readouterr().err  # no probe asked for
    # a probe without its blank twin: said (no calibrated accuracy without both)
    assert "char_spell without its blank twin (char_spell_blank)" in err
    manager.all_tasks.append("char_spell_blank")
    harness.evaluate(
        str(model), ["char_spell", "char_spell_blank"], 5, task_manager=manager, replace=True
    )
    assert "blank twin" not in capsys.readouterr().err


def test_an_lm_eval_without_the_task_api_used_is_refused_naming_its_version(monkeypatch):
    """The evaluation loads tasks with TaskManager.load and lm_eval.tasks._yaml_loader (lm-eval
    0.4.12 and later): the eval extra asks for such a version, and an older one installed is
    refused in a line naming it, not met with an AttributeError halfway through."""
    import tomllib

    import lm_eval.tasks
    from packaging.requirements import Requirement

    with open(ROOT / "pyproject.toml", "rb") as f:
        extra = tomllib.load(f)["project"]["optional-dependencies"]["eval"]
    [wanted] = [r for r in map(Requirement, extra) if r.name == "lm-eval"]
    assert wanted.specifier.contains(harness.LM_EVAL_LEAST)
    assert not wanted.specifier.contains("0.4.11")
    assert callable(lm_eval.tasks.TaskManager.load)  # the installed one has it

    class Older:  # lm-eval 0.4.11's TaskManager: load_task_or_group, no load
        def __init__(self, include_path=None):
            pass

        def load_task_or_group(self, task_list=None):
            return {}

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", Older)
    with pytest.raises(ValueError, match=r"needs lm-eval >= 0\.4\.12 .*--upgrade"):
        harness.task_index()


@pytest.mark.parametrize("flag", ["--model", "--all-checkpoints"])
def test_a_folder_that_is_not_there_is_refused_before_the_hub_is_asked(tmp_path, flag):
    """A mistyped model or run folder is said at once, in one line naming it: the hub (here an
    endpoint that refuses connections) is not asked first, nor warned about."""
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME")
    proxies = [f"{k}{s}" for k in ("http", "https", "all") for s in ("_proxy", "_PROXY")]
    env = {k: v for k, v in os.environ.items() if k not in (*names, *proxies)}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf_home"))
    missing = tmp_path / "missing"
    out = subprocess.run(
        [sys.executable, "-m", "prefix_titan.eval", flag, str(missing), "--tasks", "piqa"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    [line] = out.stderr.splitlines()[:1]
    assert line.startswith("python -m prefix_titan.eval: error: ") and str(missing) in line
    assert "warning" not in out.stderr and "hub" not in out.stderr, out.stderr
