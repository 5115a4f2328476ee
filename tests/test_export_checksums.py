"""An export records the sha256 of each file it writes, and an evaluation that reuses an export
(eval --all-checkpoints reusing RUN/hf/step-N, eval --model) checks them before the model is read:
a damaged or changed export is refused, an intact one used, one exported before the checksums
were recorded still evaluated (said to be unchecked)."""

import json
import os
import shutil

import pytest
from helpers import ROOT, train

pytestmark = pytest.mark.slow  # trains a tiny model and evaluates its exports


@pytest.fixture(scope="module")
def trained(module_tmp):
    """A tiny run with a checkpoint at step 2 (run_config.json recorded)."""
    train(module_tmp, "--checkpoint.enable", "--checkpoint.interval", "2", "--training.steps", "2")
    return module_tmp


def config_args(tmp, run):
    return [
        *("--job.config_file", f"{ROOT}/train_configs/embedded_default.toml"),
        *("--job.dump_folder", str(run), "--model.hf_assets_path", str(tmp / "tokenizer")),
        *("--training.seq_len", "64"),
    ]


def exported_into_run(trained, tmp_path):
    """A copy of the run whose step 2 is exported to RUN/hf/step-2 and not evaluated, as an
    `eval --all-checkpoints` killed after the export leaves it; (run, export folder)."""
    from prefix_titan.evaluation.export import export

    run = shutil.copytree(trained / "run", tmp_path / "run")
    out = str(run / "hf" / "step-2")
    export(config_args(trained, run), out, checkpoint=str(run / "checkpoint" / "step-2"))
    return run, out


def flip_a_byte(path):
    """One byte of the tensor data (past the header: the file still reads) changed."""
    data = bytearray(open(path, "rb").read())
    data[len(data) - 7] ^= 0x01
    open(path, "wb").write(bytes(data))
    return bytes(data)


def test_the_export_records_the_sha256_of_each_file_it_wrote(trained, tmp_path):
    from prefix_titan.evaluation.export import FILE_SUMS
    from prefix_titan.runs.checkpoints import sha256
    from prefix_titan.runs.folder import EXPORT_RECORD, read_json

    _, out = exported_into_run(trained, tmp_path)
    record = read_json(os.path.join(out, EXPORT_RECORD), expect=dict)
    assert record["verified"] is True and record["step"] == 2
    written = sorted(n for n in os.listdir(out) if n != EXPORT_RECORD)
    assert sorted(record[FILE_SUMS]) == written and "model.safetensors" in written
    for name, digest in record[FILE_SUMS].items():
        assert sha256(os.path.join(out, name)) == digest


def run_main(capsys, *args):
    """`python -m prefix_titan.eval ARGS` in this process: (exit status, stderr)."""
    from prefix_titan.eval import main

    try:
        main(list(args))
    except SystemExit as e:
        return e.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


def test_a_damaged_reused_export_is_refused_and_an_intact_one_used(trained, tmp_path, capsys):
    run, out = exported_into_run(trained, tmp_path)
    capsys.readouterr()  # (the export's own lines)
    weights = os.path.join(out, "model.safetensors")
    intact = open(weights, "rb").read()
    flip_a_byte(weights)
    code, err = run_main(capsys, "--all-checkpoints", str(run), "--tasks", "embedding_probe")
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert f"{weights} is not the file exported (its sha256 differs from the record)" in line
    assert f"delete {out} and evaluate again (eval --all-checkpoints {run}" in line, line
    assert len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(os.path.join(out, "eval_results.json"))  # nothing evaluated
    assert not os.path.exists(run / "eval_curve.json")
    # eval --model of the same folder (a run's own RUN/hf/step-N): refused alike
    code, err = run_main(capsys, "--model", out, "--tasks", "embedding_probe")
    assert code == 2 and f"{weights} is not the file exported" in err, err
    from prefix_titan.embedding_probe import main as probe  # the probe's own command too

    with pytest.raises(SystemExit) as e:
        probe([out])
    assert e.value.code == 2 and f"{weights} is not the file exported" in capsys.readouterr().err
    # a model file the export did not write, and one missing: refused, naming them
    open(weights, "wb").write(intact)
    extra = os.path.join(out, "model-00002-of-00002.safetensors")
    shutil.copy(weights, extra)
    os.unlink(os.path.join(out, "generation_config.json"))
    code, err = run_main(capsys, "--all-checkpoints", str(run), "--tasks", "embedding_probe")
    assert code == 2, err
    assert f"{os.path.join(out, 'generation_config.json')} is missing" in err, err
    assert f"{extra} was not written by the export" in err, err
    # the way out said: the export deleted, the next evaluation exports the step again
    shutil.rmtree(out)
    code, err = run_main(capsys, "--all-checkpoints", str(run), "--tasks", "embedding_probe")
    assert code == 0, err
    again = json.load(open(os.path.join(out, "eval_results.json")))
    assert "embedding_probe" in again["results"]
    # an intact export made before is reused (not exported again) and evaluated
    os.unlink(os.path.join(out, "eval_results.json"))
    shutil.rmtree(os.path.join(out, "eval_items"), ignore_errors=True)
    shutil.rmtree(run / "evals", ignore_errors=True)
    before = os.stat(weights).st_mtime_ns
    code, err = run_main(capsys, "--all-checkpoints", str(run), "--tasks", "embedding_probe")
    assert code == 0, err
    assert os.stat(weights).st_mtime_ns == before
    assert json.load(open(os.path.join(out, "eval_results.json")))["results"]["embedding_probe"]


def test_an_export_outside_the_run_says_to_export_again(trained, tmp_path):
    from prefix_titan.evaluation.export import export
    from prefix_titan.evaluation.harness import evaluate

    run = shutil.copytree(trained / "run", tmp_path / "run")
    step = str(run / "checkpoint" / "step-2")
    out = export(config_args(trained, run), str(tmp_path / "hf"), checkpoint=step)
    weights = os.path.join(out, "model.safetensors")
    flip_a_byte(weights)
    with pytest.raises(ValueError) as e:
        evaluate(out, tasks=["embedding_probe"])
    assert f"{weights} is not the file exported" in str(e.value)
    assert f"export the checkpoint {step} again over it" in str(e.value)
    assert f"--out {out} --overwrite" in str(e.value) and "\n" not in str(e.value)
    assert not os.path.exists(os.path.join(out, "eval_results.json"))


def test_an_export_recorded_before_the_checksums_is_evaluated_unchecked(trained, tmp_path, capsys):
    from prefix_titan.evaluation.export import FILE_SUMS
    from prefix_titan.evaluation.harness import evaluate_run
    from prefix_titan.runs.folder import EXPORT_RECORD

    run, out = exported_into_run(trained, tmp_path)
    path = os.path.join(out, EXPORT_RECORD)
    record = json.load(open(path))
    del record[FILE_SUMS]
    json.dump(record, open(path, "w"))
    curve = evaluate_run(str(run), tasks=["embedding_probe"])
    assert sorted(curve) == [2] and "embedding_probe" in curve[2]
    err = capsys.readouterr().err
    assert f"note: {path} records no checksums (the export predates them)" in err, err
    assert "cannot be checked; export it again to have them checked" in err
