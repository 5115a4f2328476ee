"""What eval says about its own results without a model: the table of a task scored on one item,
results not filed with a run folder that is gone, --model and --data-dir that are not folders,
the learning curve's tasks, --limit at or above a task's items, and a step's results filed from
a second export (lm-eval's own evaluation is faked where it would need one)."""

import json
import os

import pytest

from prefix_titan.evaluation import harness
from prefix_titan.runs.folder import EXPORT_RECORD, RUN_CONFIG, read_json


def test_a_standard_error_lm_eval_gives_as_text_is_shown_as_na():
    """lm-eval records the standard error of a task scored on one item as 'N/A': the table shows
    n/a (it ended eval with "Unknown format code 'f'" after the results were written)."""
    results = {
        "results": {
            "piqa": {"acc,none": 1.0, "acc_stderr,none": "N/A", "acc_norm,none": 0.0},
            "cute_spell": {"exact_match,none": 1.0, "exact_match_stderr,none": "N/A"},
        },
        "chance": {"piqa": 0.5},
    }
    rows = harness.table(results).splitlines()
    assert "| piqa | 1.0000 | n/a | 0.0000 | - | - | 0.5000 | - |" in rows, rows
    assert "| cute_spell | - | - | - | 1.0000 | n/a | - | - |" in rows, rows


def _export(tmp_path, name, run, step=3):
    """A model folder whose export record names `run` and `step`."""
    model = tmp_path / "hf" / name
    model.mkdir(parents=True)
    (model / EXPORT_RECORD).write_text(json.dumps({"run_dir": str(run), "step": step}))
    return model


def _evaluated(model, task, acc):
    """An evaluation of `task` written into `model` and filed with its run, as evaluate does."""
    results = {"model": str(model), "tasks": [task], "results": {task: {"acc,none": acc}}}
    items = {task: [{"doc_id": i, "gold": 0, "logliks": [-1.0, -2.0]} for i in range(3)]}
    written = harness.write_evaluation(str(model), results, items)
    return harness.file_with_run(str(model), written, items)


def test_results_not_filed_with_a_run_folder_that_is_gone_say_so(tmp_path, capsys):
    run = tmp_path / "run"
    model = _export(tmp_path, "m", run)
    assert _evaluated(model, "piqa", 0.5) is None
    err = capsys.readouterr().err
    assert "note: the results were not filed with the run this model was exported from" in err
    assert f"names the run folder {run}, which no longer exists" in err
    assert "that run's report will not find them" in err
    assert f"move the run folder back to {run}" in err and "--all-checkpoints" in err
    run.mkdir()  # back: filed, and no note
    assert _evaluated(model, "piqa", 0.5) == str(run / "evals" / "step-3" / "eval_results.json")
    assert "not filed" not in capsys.readouterr().err
    loose = tmp_path / "loose"  # exported from no run: nothing to say
    loose.mkdir()
    (loose / EXPORT_RECORD).write_text(json.dumps({"run_dir": None, "checkpoint": "x"}))
    assert _evaluated(loose, "piqa", 0.5) is None
    assert "not filed" not in capsys.readouterr().err
    # a run moved with its exports (RUN/hf/step-N): its report finds the results where they are
    moved = tmp_path / "moved"
    (moved / "hf" / "step-3").mkdir(parents=True)
    (moved / RUN_CONFIG).write_text("{}")
    inside = moved / "hf" / "step-3"
    (inside / EXPORT_RECORD).write_text(json.dumps({"run_dir": str(tmp_path / "old"), "step": 3}))
    assert _evaluated(inside, "piqa", 0.5) is None
    assert "not filed" not in capsys.readouterr().err


def run_main(capsys, *args):
    """`python -m prefix_titan.eval ARGS` in this process: (exit status, stderr)."""
    from prefix_titan.eval import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    return e.value.code, capsys.readouterr().err


def test_a_model_or_data_dir_that_is_not_a_folder_is_refused_naming_its_flag(tmp_path, capsys):
    model = tmp_path / "hf"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    data = tmp_path / "data"
    data.mkdir()
    weights = model / "model.safetensors"
    code, err = run_main(
        capsys, "--model", str(weights), "--data-dir", str(data), "--tasks", "piqa"
    )
    assert code == 2 and "Traceback" not in err
    assert f"--model {str(weights)!r} is a file, not a folder: --model takes an exported" in err
    assert f"(its folder, --model {model}, is one)" in err
    for tasks in (["piqa"], ["char_probes"]):  # (the probes read no --data-dir file)
        code, err = run_main(
            capsys, "--model", str(model), "--data-dir", str(weights), "--tasks", *tasks
        )
        assert code == 2 and f"--data-dir {weights}: a file, not a folder" in err, err
        missing = tmp_path / "missing"
        code, err = run_main(
            capsys, "--model", str(model), "--data-dir", str(missing), "--tasks", *tasks
        )
        assert code == 2 and f"--data-dir {missing}: no such folder" in err, err
    assert sorted(os.listdir(model)) == ["config.json", "model.safetensors"]  # nothing written
    with pytest.raises(ValueError, match="no such folder"):  # evaluate's own check, too
        harness.data_sources(["char_spell"], str(tmp_path / "missing"))
    assert harness.data_sources(["char_spell"], str(data)) == {}


def _run_with_exports(tmp_path, steps):
    """A run folder with finished checkpoints at `steps`, each exported (RUN/hf/step-N) and
    evaluated on piqa before."""
    run = tmp_path / "run"
    record = {"objective": {"name": "ce"}, "checkpoint": {"folder": "checkpoint"}}
    (run / "checkpoint").mkdir(parents=True)
    (run / "run_config.json").write_text(json.dumps(record))
    for step in steps:
        (run / "checkpoint" / f"step-{step}").mkdir()
        (run / "checkpoint" / f"step-{step}" / ".metadata").write_bytes(b"")
        out = run / "hf" / f"step-{step}"
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        piqa = {"acc,none": step / 100}
        results = {"results": {"piqa": piqa}, "limit": None, "versions": {"piqa": "1.0 ascii"}}
        (out / "eval_results.json").write_text(json.dumps(results))
    return run


def test_the_learning_curve_holds_every_task_of_each_step_now_or_before(
    tmp_path, monkeypatch, capsys
):
    """A run evaluated on piqa, then on the embedding probe alone: the curve keeps piqa beside
    the probe at every step (it held the probe alone), steps beside --last's too; --last beyond
    the run's checkpoints says how many there are."""
    run = _run_with_exports(tmp_path, [10, 20])

    def evaluate(out, **kwargs):  # what an evaluation of the embedding probe adds
        path = os.path.join(out, "eval_results.json")
        results = read_json(path, expect=dict)
        results["results"]["embedding_probe"] = {"ending_acc,none": 0.25}
        with open(path, "w") as f:
            json.dump(results, f)
        return {"results": {}}

    monkeypatch.setattr(harness, "evaluate", evaluate)
    curve = harness.evaluate_run(str(run), last=1, tasks=["embedding_probe"])
    assert curve == {
        10: {"piqa": {"acc,none": 0.1}},  # (evaluated before, on piqa alone)
        20: {"embedding_probe": {"ending_acc,none": 0.25}, "piqa": {"acc,none": 0.2}},
    }
    assert read_json(str(run / "eval_curve.json")) == {str(k): v for k, v in curve.items()}
    assert "note: --last" not in capsys.readouterr().err
    curve = harness.evaluate_run(str(run), last=5, tasks=["embedding_probe"])
    assert set(curve[10]) == set(curve[20]) == {"piqa", "embedding_probe"}
    err = capsys.readouterr().err
    assert "note: --last 5, and the run has 2 finished checkpoints (step-10, step-20)" in err


@pytest.mark.parametrize(
    "before, now, refused",
    [
        ({"limit": 1000, "piqa": 24}, None, False),  # 1000 of 24: every item, as no limit
        ({"limit": 1000, "piqa": 24}, 30, False),
        ({"limit": None, "piqa": 24}, 1000, False),
        ({"limit": 1000, "piqa": 24}, 10, True),  # 10 of 24: a sample
        ({"limit": None, "piqa": 24, "hellaswag": 10042}, 1000, True),  # hellaswag sampled
        ({"limit": 5, "piqa": None}, None, True),  # (an item count not recorded)
    ],
)
def test_a_limit_at_or_above_a_tasks_items_is_every_item_in_the_model_and_run_folders(
    tmp_path, before, now, refused
):
    """The model folder's check (a results file of other settings is refused) reads a limit at
    or above a task's item count as every item, as the run folder's check does (it refused a
    later evaluation without --limit of a model evaluated at --limit 1000 on 24 items)."""
    import prefix_titan.eval as cli

    limit = before.pop("limit")
    earlier = {
        "results": {t: {"acc,none": 0.5} for t in before},
        "n_samples": {t: {"original": n, "effective": n} for t, n in before.items() if n},
        "limit": limit,
        "limit_seed": None if limit is None else harness.LIMIT_SEED,
        "limit_sampling": None if limit is None else harness.LIMIT_SAMPLING,
        "versions": {t: "1.0 ascii" for t in before},
    }
    run = tmp_path / "run"
    (run / "checkpoint" / "step-40").mkdir(parents=True)
    record = {"objective": {"name": "ce"}, "checkpoint": {"folder": "checkpoint"}}
    (run / "run_config.json").write_text(json.dumps(record))
    for folder in (tmp_path / "hf", run / "evals" / "step-40"):
        folder.mkdir(parents=True)
        (folder / "eval_results.json").write_text(json.dumps(earlier))
    settings = harness.evaluation_settings(
        now, harness.LIMIT_SEED, harness.ProbeOptions(), ["piqa"]
    )
    model = harness.replaced_evaluation(
        str(tmp_path / "hf" / "eval_results.json"), settings, ["piqa"]
    )
    in_run = cli.contradicted(str(run), [40], list(before), settings, set())
    assert (model is not None) == refused, model
    assert bool(in_run) == refused, in_run  # the run folder's check: the same answer
    if not refused:  # kept, not evaluated again
        kept = harness._kept("x", earlier, ["piqa"], settings)
        assert kept == ["piqa"]


def test_a_step_filed_from_a_second_export_names_the_first(tmp_path, capsys):
    """Results of a step filed from one export, then from another folder's export of the same
    step: the filed results now name the second, said with the first's folder and the tasks
    evaluated from it."""
    run = tmp_path / "run"
    run.mkdir()
    first, second = _export(tmp_path, "a", run), _export(tmp_path, "b", run)
    _evaluated(first, "piqa", 0.5)
    assert "another export" not in capsys.readouterr().err
    filed = _evaluated(second, "arc_easy", 0.25)
    err = capsys.readouterr().err
    assert f"note: {filed} held results filed from another export of this step, {first}" in err
    assert f"now name {second} as their model, piqa too (evaluated from the other)" in err
    assert read_json(filed, expect=dict)["exported_to"] == str(second)
    _evaluated(second, "hellaswag", 0.25)  # from the same export again: nothing to say
    assert "another export" not in capsys.readouterr().err


def test_a_model_folder_without_weights_is_refused_in_one_line(tmp_path):
    """A copy of an export that left its weights out ended eval in the loader's traceback
    ("Error no file named model.safetensors"): refused before anything is built, naming it; a
    folder holding PyTorch *.bin weights is not refused for want of *.safetensors."""
    from helpers import fake_export

    from prefix_titan.runs.checkpoints import unreadable_weights

    model = tmp_path / "copy"
    fake_export(model)
    (model / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="holds no weights") as e:
        harness.evaluate(str(model), ["piqa"])
    assert str(model) in str(e.value) and "export the checkpoint again" in str(e.value)
    assert not os.path.exists(model / "eval_results.json")
    (model / "pytorch_model.bin").write_bytes(b"")
    assert unreadable_weights(str(model)) is None


def test_a_model_folder_without_a_tokenizer_is_refused_naming_it(tmp_path):
    """No tokenizer file at all ended lm-eval in transformers' "Couldn't instantiate the backend
    tokenizer", naming neither the folder nor the file: refused before anything is written; a
    folder holding a tokenizer saved without tokenizer.json is left to lm-eval."""
    from helpers import fake_export

    model = tmp_path / "copy"
    fake_export(model)
    (model / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match="holds no tokenizer") as e:
        harness.evaluate(str(model), ["piqa"])
    assert str(model) in str(e.value) and "export the checkpoint again" in str(e.value)
    assert not os.path.exists(model / "eval_results.json")
    (model / "tokenizer.model").write_bytes(b"")
    harness.refuse_tokenizer(str(model), ["piqa"])  # not refused: lm-eval reads it


def test_a_data_dir_task_outside_the_checked_ones_is_said_unchecked(tmp_path, capsys):
    """A --data-dir task whose fields eval does not know (lambada_openai) was read in silence, and
    its table showed a chance level of 1.0 (one continuation scored alone): said unchecked, and
    no chance level."""
    (tmp_path / "lambada_openai.jsonl").write_text('{"text": "a b c"}\n')
    (tmp_path / "piqa.jsonl").write_text('{"goal": "g", "sol1": "a", "sol2": "b", "label": 0}\n')
    digests = harness.check_data_dir(str(tmp_path), ["lambada_openai", "piqa"])
    assert set(digests) == {"lambada_openai", "piqa"}
    err = capsys.readouterr().err
    assert "note: --data-dir: lambada_openai is read as lm-eval's own schema, unchecked" in err
    assert "piqa" not in err.split("(")[0] and "and CUTE's tasks alone" in err
    harness.check_data_dir(str(tmp_path), ["piqa"])
    assert "unchecked" not in capsys.readouterr().err
    assert harness.chance_level([{"logliks": [-1.0]}, {"logliks": [-2.0]}]) is None
    assert harness.chance_level([{"logliks": [-1.0, -2.0]}, {"logliks": [-1, -2, -3, -4]}]) == 0.375
