"""Through torchtitan's real `train` main on CPU, via our launcher (one process or torchrun)."""

import json
import os
import re
import subprocess
import sys

import pytest
from helpers import CE, ROOT, VAL, embedded_tokenizer_at, load_script, train, train_all

pytestmark = pytest.mark.slow  # end-to-end trainings


@pytest.mark.parametrize("objective", ["label_smoothing", "prefix"])
def test_objectives_train_and_log_plain_ce(tmp_path, objective):
    log, losses = train(
        tmp_path,
        "--objective.name",
        objective,
        "--training.steps",
        "12",
        "--validation.enable",
        "--validation.freq",
        "6",
        "--validation.steps",
        "2",
    )
    assert sorted(losses) == list(range(1, 13))
    assert all(v == v and v < 20 for v in losses.values())  # finite
    ce = {int(s): float(v) for s, v in CE.findall(log)}
    assert sorted(ce) == list(range(1, 13))
    # The objective is not plain CE (soft targets), but both fall as the model learns.
    assert losses[12] < losses[1] - 0.5 and ce[12] < ce[1] - 0.5
    assert any(abs(losses[s] - ce[s]) > 1e-3 for s in ce)
    val = [float(v) for _, v in VAL.findall(log)]
    assert len(val) == 3 and val[-1] < val[0]  # steps 1, 6, 12
    # The log a person reads: no colour codes in a file, no known-harmless warnings, no MFU
    # against an A100's peak on a CPU.
    assert "\x1b[" not in log and "mfu: n/a" in log and "mfu: 0" not in log
    for noise in ("lspci", "Peak flops undefined", "set_vital", "CPU autocast", "TORCH_NCCL"):
        assert noise not in log, noise


def prepare_shards(tmp_path):
    """Token shards of the embedded corpus, written by the prepare command."""
    embedded_tokenizer_at(tmp_path / "tokenizer")
    out = tmp_path / "shards"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "prefix_titan.prepare",
            "--source",
            "embedded",
            "--tokenizer",
            str(tmp_path / "tokenizer"),
            "--out",
            str(out),
            "--tokens",
            "2e5",
            "--val-tokens",
            "2e4",
            "--val-every",
            "20",
            "--shard-tokens",
            "50000",
            "--no-progress",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return (
        "--training.dataset",
        "fineweb_edu_ascii_tokens",
        "--training.dataset_path",
        str(out),
        "--validation.dataset",
        "fineweb_edu_ascii_tokens",
        "--validation.dataset_path",
        str(out),
    )


@pytest.mark.parametrize("data", ["embedded_docs"])  # token shards' resume: test_shards.py
def test_resume_reproduces_uninterrupted_run(tmp_path, data):
    common = (
        "--checkpoint.enable",
        "--checkpoint.interval",
        "4",
        "--lr_scheduler.total_steps",
        "8",
        "--objective.tau",
        "0.2",
        *(prepare_shards(tmp_path) if data == "token_shards" else ()),
    )
    runs = {
        "full": (*common, "--training.steps", "8"),
        "stopped": (*common, "--training.steps", "4"),
    }
    (_, full), (_, first) = train_all(tmp_path, runs).values()
    log, resumed = train(tmp_path, *common, "--training.steps", "8", name="stopped")
    assert "Training starts at step 5" in log
    assert sorted(resumed) == [5, 6, 7, 8]
    for step in range(1, 9):
        got = first[step] if step <= 4 else resumed[step]
        assert got == pytest.approx(full[step], rel=1e-5, abs=1e-5), step
    # bit for bit, from the metrics logs' full-precision losses (the resumed run's steps are in
    # the same log as its first four)
    losses = load_script("compare_runs").losses
    assert losses(str(tmp_path / "stopped")) == losses(str(tmp_path / "full"))
    if data == "embedded_docs":  # the finished run again: nothing trained, and it says so
        log, again = train(tmp_path, *common, "--training.steps", "8", name="stopped")
        assert not again and "nothing trained: the run had reached training.steps (8)" in log
        assert "DCP checkpoint written" not in log
        log, _ = train(tmp_path, *common, "--training.steps", "6", name="stopped", check=False)
        assert "holds a checkpoint at step 8, past training.steps (6)" in log


def test_two_ranks_match_one_rank(tmp_path):
    # Both runs start from one seed checkpoint (sharded init draws different random numbers).
    train(
        tmp_path,
        "--checkpoint.enable",
        "--checkpoint.create_seed_checkpoint",
        "--parallelism.data_parallel_shard_degree",
        "1",
        name="seed",
    )
    seed = str(tmp_path / "seed" / "checkpoint" / "step-0")
    common = (
        "--checkpoint.enable",
        "--checkpoint.initial_load_path",
        seed,
        "--training.steps",
        "3",
        "--validation.enable",
        "--validation.freq",
        "3",
        "--validation.steps",
        "2",
    )
    per_rank = ("--training.local_batch_size", "--validation.local_batch_size")
    _, one = train(tmp_path, *common, *(x for f in per_rank for x in (f, "4")), name="one")
    log, two = train(
        tmp_path, *common, *(x for f in per_rank for x in (f, "2")), nproc=2, name="two"
    )
    assert "dp_shard=2" in log  # FSDP2 over 2 gloo ranks
    assert len(re.findall(r"step:  2  loss", log)) == 1  # rank 0's log only
    assert sorted(one) == sorted(two) == [1, 2, 3]
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4), step
    # The validation metrics, summed over the two ranks, are those of one rank on the same tokens.
    rows = {}
    for name in ("one", "two"):
        log_rows = (tmp_path / name / "prefix_metrics.jsonl").read_text().splitlines()
        rows[name] = next(r for r in map(json.loads, log_rows) if "validation_top1" in r)
    assert len(rows["one"]) >= 14 and set(rows["one"]) == set(rows["two"])
    assert 0 < rows["one"]["validation_support_mass"] < 1  # the prefix arm's own support
    assert {"validation_ce_pos_1-16", "validation_ce_pos_17-64"} <= set(rows["one"])
    for key, value in rows["one"].items():
        assert rows["two"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    # resumed on 1 rank: refused before its record is written again (torchtitan failed after)
    record = (tmp_path / "two" / "run_config.json").read_text()
    log, _ = train(
        tmp_path, *common, *(x for f in per_rank for x in (f, "2")), name="two", check=False
    )
    assert "holds checkpoints saved on 2 ranks in all (dp_shard 2), and this run starts on 1" in log
    assert "Resume on 2 ranks (torchrun's" in log and "Traceback" not in log, log[-3000:]
    assert (tmp_path / "two" / "run_config.json").read_text() == record


def test_bad_setting_fails_before_training(tmp_path):
    log, losses = train(tmp_path, "--objective.support", "everything", check=False)
    assert "objective.support must be one of prefix, vocab; got 'everything'" in log
    assert not losses


def test_compiled_loss_and_compiled_fused_head_train_like_eager(tmp_path):
    # The fused head trains like the unfused loss (to 1e-5: the FSDP test below), so both
    # compiled runs are held to the one eager run.
    common = (
        "--objective.normalize",
        "--objective.support",
        "vocab",
        "--objective.tau",
        "0.2",
        "--training.steps",
        "3",
    )
    runs = train_all(
        tmp_path,
        {
            "eager": common,
            "compiled": (*common, "--compile.enable", "--compile.components", "loss"),
            "compiled_fused": (
                *common,
                "--objective.fused_loss",
                "--compile.enable",
                "--compile.components",
                "model,loss",
            ),
        },
    )
    (_, eager), (log, compiled), (log_f, fused) = runs.values()
    assert "row passes compiled with torch.compile" in log
    assert "Fused loss: prefix computed by the model's head in chunks of 128 tokens (the " in log_f
    assert "row passes compiled with torch.compile" in log_f
    assert "Compiling each TransformerBlock with torch.compile" in log_f
    for run in (compiled, fused):
        assert sorted(run) == [1, 2, 3]
        for step in eager:
            assert run[step] == pytest.approx(eager[step], rel=1e-4), step


def test_fused_loss_trains_like_unfused_under_fsdp_ac_and_accumulation(tmp_path):
    # 2 gloo ranks (FSDP2 shards the head's weight), full activation checkpointing, 2 micro-batches
    # per step; validation through the fused head too.
    common = (
        "--objective.normalize",
        "--objective.support",
        "vocab",
        "--training.steps",
        "4",
        "--training.local_batch_size",
        "2",
        "--training.global_batch_size",
        "8",
        "--activation_checkpoint.mode",
        "full",
        "--validation.enable",
        "--validation.freq",
        "2",
        "--validation.steps",
        "2",
    )
    log_u, unfused = train(tmp_path, *common, nproc=2, name="unfused")
    # 40-token chunks: not the CPU default (128), and they cut across sequences.
    chunks = ("--objective.fused_chunk_tokens", "40")
    log_f, fused = train(
        tmp_path, *common, "--objective.fused_loss", *chunks, nproc=2, name="fused"
    )
    assert "dp_shard=2" in log_f
    assert "by the model's head in chunks of 40 tokens (objective.fused_chunk_tokens)" in log_f
    assert sorted(fused) == sorted(unfused) == [1, 2, 3, 4]
    for step in unfused:
        assert fused[step] == pytest.approx(unfused[step], rel=1e-5), step
    for pattern in (CE, VAL):
        got = [float(v) for _, v in pattern.findall(log_f)]
        want = [float(v) for _, v in pattern.findall(log_u)]
        assert len(got) == len(want) > 0 and got == pytest.approx(want, rel=1e-5)


def test_plain_ce_and_validation_ignore_the_objective_and_position_weighting(tmp_path):
    # lr = 0 keeps the seeded initial weights: every run sees the same model and batches, so the
    # objectives (ce, prefix, prefix position-weighted, fused or not) must differ while the logged
    # plain CE and the validation CE (plain, unweighted) must not.
    common = (
        "--optimizer.lr",
        "0",
        "--training.steps",
        "2",
        "--validation.enable",
        "--validation.freq",
        "2",
        "--validation.steps",
        "2",
    )
    gamma = ("--objective.position_gamma", "0.9")
    runs = train_all(
        tmp_path,
        {
            "plain": common,
            "unfused": (*common, *gamma),
            "fused": (*common, *gamma, "--objective.fused_loss"),
            "ce": (*common, "--objective.name", "ce"),
        },
    )
    (log_plain, plain), (log_u, unfused), (log_f, fused), (log_ce, ce) = runs.values()
    assert sorted(fused) == sorted(unfused) == [1, 2]
    for step in unfused:
        assert fused[step] == pytest.approx(unfused[step], rel=1e-5), step
        assert abs(unfused[step] - plain[step]) > 1e-4, step
    # At init predictions are near uniform, so both objectives are near log V, yet differ (by
    # 1.4e-3 nats with CPython 3.12's embedded corpus; the log shows 5 decimals).
    assert abs(ce[1] - plain[1]) > 5e-4
    for pattern in (CE, VAL):
        want = [float(v) for _, v in pattern.findall(log_plain)]
        assert len(want) >= 2  # CE also matches the validation lines
        for log in (log_u, log_f, log_ce):
            assert [float(v) for _, v in pattern.findall(log)] == pytest.approx(want, rel=1e-5)


def test_keep_latest_k_keeps_that_many_steps(tmp_path):
    """torchtitan purges after every save but the last; the run's end deletes the one left over."""
    common = ("--checkpoint.enable", "--checkpoint.interval", "1", "--training.steps", "4")
    log, _ = train(tmp_path, *common, "--checkpoint.keep_latest_k", "2", name="run")
    folder = tmp_path / "run" / "checkpoint"
    assert sorted(p.name for p in folder.iterdir()) == ["step-3", "step-4"], log[-2000:]
    assert "checkpoint.keep_latest_k = 2 keeps the newest 2 steps" in log
    for step in ("step-3", "step-4"):
        assert (folder / step / "sha256sums-rank0.txt").is_file()


def test_a_run_is_never_relabelled_nor_resumed_from_a_damaged_checkpoint(tmp_path):
    import json

    from prefix_titan.evaluation.export import export

    common = (
        "--checkpoint.enable",
        "--checkpoint.interval",
        "2",
        "--lr_scheduler.total_steps",
        "6",
        "--training.steps",
        "4",
    )
    train(tmp_path, *common, "--checkpoint.keep_latest_k", "0", name="run")
    record = tmp_path / "run" / "run_config.json"
    assert json.loads(record.read_text())["objective"]["name"] == "prefix"
    placed = {"ranks": 1, "dp_replicate": 1, "dp_shard": 1, "cp": 1, "tp": 1, "pp": 1}
    assert json.loads(record.read_text())["placement"] == placed  # what the seed's weights follow
    ran = {"kernel": "pytorch", "fused_chunk_tokens": None}  # 'auto' on a CPU, unfused
    assert json.loads(record.read_text())["resolved"] == ran
    read = json.loads(record.read_text())["data_files"]  # what it read under its settings' names
    assert set(read) == {
        "tokenizer.json",
        "tokenizer_config.json",
        "training corpus",  # the embedded corpus: the Python installation's
        "validation corpus",
    } and all(len(v) == 64 for v in read.values())
    folder = tmp_path / "run" / "checkpoint"
    for step in ("step-2", "step-4"):  # recorded after each save, the last one at close
        assert sorted(p.name for p in (folder / step).glob("sha256sums-*")) == [
            "sha256sums-rank0.txt"
        ]

    # Another objective in the same folder: refused, the record untouched.
    log, losses = train(tmp_path, *common, "--objective.name", "ce", name="run", check=False)
    assert "holds a checkpoint (step-4) of a run with other settings" in log
    assert "objective.name: 'prefix' -> 'ce'" in log and not losses
    assert json.loads(record.read_text())["objective"]["name"] == "prefix"

    # A damaged last step: named, never trained on, never exported.
    data = folder / "step-4" / "__0_0.distcp"
    blob = bytearray(data.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # same size, one byte flipped
    data.write_bytes(bytes(blob))
    log, losses = train(tmp_path, *common[:-1], "6", name="run", check=False)
    assert "step-4 is damaged and will not be loaded" in log and not losses
    assert "__0_0.distcp differs from the checksum recorded when it was saved" in log
    assert "--checkpoint.load_step 2" in log
    config = [
        "--job.config_file",
        "train_configs/embedded_default.toml",
        "--job.dump_folder",
        str(tmp_path / "run"),
        "--model.hf_assets_path",
        str(tmp_path / "tokenizer"),
        "--training.seq_len",
        "64",
    ]
    with pytest.raises(ValueError, match="step-4 is damaged and will not be exported"):
        export(config, str(tmp_path / "hf"))
    assert not (tmp_path / "hf").exists()

    # What the message says to do: more steps from the intact step 2 (allowed on resume).
    log, losses = train(tmp_path, *common[:-1], "6", "--checkpoint.load_step", "2", name="run")
    assert "Training starts at step 3" in log and sorted(losses) == [3, 4, 5, 6]


def test_a_diverging_run_stops_at_the_first_non_finite_step_and_saves_nothing_after(tmp_path):
    """lr 1e30: step 1's weights are huge but finite (saved); step 2's loss is not."""
    log, losses = train(
        tmp_path,
        "--checkpoint.enable",
        "--checkpoint.interval",
        "1",
        "--training.steps",
        "6",
        "--optimizer.lr",
        "1e30",
        "--training.max_norm",
        "1e30",
        check=False,
    )
    assert re.search(  # one line, no traceback
        r"(?m)^error: step 2: (the gradient norm is nan|the training loss is not finite"
        r"|a gradient is not finite)",
        log,
    ), log[-3000:]
    assert "Traceback" not in log and "FloatingPointError" not in log
    assert sorted(losses) == [1]
    assert sorted(os.listdir(tmp_path / "run" / "checkpoint")) == ["step-1"]


STOP_VALIDATING = """
import sys

from prefix_titan import train
from prefix_titan.titan import validate

def stopped(self, model_parts, step):
    raise KeyboardInterrupt  # Ctrl-C while step STEP is validated

real = validate.PlainCEValidator.validate
validate.PlainCEValidator.validate = lambda self, parts, step: (
    stopped if step == STEP else real
)(self, parts, step)
sys.argv[0] = "prefix_titan.train"
train.main()
"""


def test_a_run_stopped_while_validating_a_step_resumes_with_that_steps_row(tmp_path):
    """A step is validated before torchtitan saves it (validate.py): a run stopped while
    validating step 4 has no checkpoint of it, resumes from step 2, trains steps 3 and 4 again
    and validates step 4. (Saved first, step 4 resumed without its row, and a sweep's report then
    left validation out for every arm: its runs had rows at different steps.)"""
    from prefix_titan.runs.folder import METRICS_LOG, read_log

    common = (
        *("--training.steps", "6", "--checkpoint.enable", "--checkpoint.interval", "2"),
        *("--validation.enable", "--validation.freq", "4", "--validation.steps", "2"),
    )
    script = tmp_path / "stop_validating.py"
    script.write_text(STOP_VALIDATING.replace("STEP", "4"))
    log, _ = train(tmp_path, *common, script=script, check=False)
    assert re.search(r"(?m)^interrupted: .*step-2", log), log[-3000:]
    assert sorted(os.listdir(tmp_path / "run" / "checkpoint")) == ["step-2"], log[-3000:]
    path = tmp_path / "run" / METRICS_LOG
    assert [r["step"] for r in read_log(str(path)) if "validation_plain_ce" in r] == [1]
    log, _ = train(tmp_path, *common)
    assert "Training starts at step 3" in log, log[-3000:]
    rows = read_log(str(path))
    assert [r["step"] for r in rows if "validation_plain_ce" in r] == [1, 4, 6]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 3, 4, 5, 6]


def test_a_validation_loss_that_is_not_finite_stops_the_run_without_a_row(tmp_path):
    """Weights finite but too large (optimizer.lr 1e15, one step) give NaN logits: the final
    validation, made before the step's save, stops the run; the step is not saved and no NaN row
    is written (it used to end with exit status 0 and a NaN validation row)."""
    from prefix_titan.runs.folder import METRICS_LOG, read_log

    log, _ = train(
        tmp_path,
        *("--training.steps", "1", "--optimizer.lr", "1e15", "--lr_scheduler.warmup_steps", "0"),
        *("--validation.enable", "--validation.steps", "1", "--checkpoint.enable"),
        check=False,
    )
    assert re.search(
        r"(?m)^error: step 1: the validation loss \(plain CE\) is not finite \(nan\): ", log
    ), log[-3000:]
    assert "No validation row is written and the step is not saved." in log, log[-3000:]
    assert not (tmp_path / "run" / "checkpoint" / "step-1").exists()
    assert "Traceback" not in log
    path = tmp_path / "run" / METRICS_LOG  # (the step's own row would follow its validation)
    assert not path.exists() or not [r for r in read_log(str(path)) if "validation_plain_ce" in r]


def test_a_family_of_ones_own_trains_with_its_options(tmp_path, monkeypatch):
    """A family by import path, its own setting given by objective.options: the trainer builds
    its table with it (a family that is label smoothing with its `mass` option trains exactly
    as the built-in label smoothing with that epsilon), and records the table's digest, which a
    run started again after the family's code changed does not match."""
    from prefix_titan.runs.folder import TARGET_TABLE

    (tmp_path / "e2e_lab.py").write_text(
        "from prefix_titan.objectives import FAMILIES, ObjectiveSpec\n\n\n"
        "def smooth(texts, spec, *, mass=0.0):\n"
        '    return FAMILIES["label_smoothing"](texts, ObjectiveSpec("label_smoothing", '
        "epsilon=mass))\n"
    )
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    runs = train_all(
        tmp_path,
        {
            "builtin": ("--objective.name", "label_smoothing", "--objective.epsilon", "0.05"),
            "own": ("--objective.name", "e2e_lab:smooth", "--objective.options", "mass=0.05"),
        },
    )
    (own_log, own), (_, builtin) = runs["own"], runs["builtin"]
    assert "Target table for e2e_lab:smooth" in own_log
    assert sorted(own) == [1, 2, 3, 4] and own == builtin
    record = json.loads((tmp_path / "own" / "run_config.json").read_text())
    assert record["objective"]["options"] == "mass=0.05"
    # the same table, recorded by its digest: equal whichever code built it
    other = json.loads((tmp_path / "builtin" / "run_config.json").read_text())
    assert len(record[TARGET_TABLE]) == 64 and record[TARGET_TABLE] == other[TARGET_TABLE]
    # which code made it: the family's file and its digest, in the record of the start
    (start,) = record["starts"]
    assert start["family_source"]["file"] == str((tmp_path / "e2e_lab.py").resolve())
    assert "family_source" not in other["starts"][0]
    # the family edited in place (another length: no stale bytecode), the run started again with
    # the same settings: refused, for the rest of it would learn other targets than its start
    source = (tmp_path / "e2e_lab.py").read_text()
    (tmp_path / "e2e_lab.py").write_text(source.replace("epsilon=mass", "epsilon=2 * mass"))
    log, again = train(
        tmp_path,
        "--objective.name",
        "e2e_lab:smooth",
        "--objective.options",
        "mass=0.05",
        name="own",
        check=False,
    )
    assert not again and "Traceback" not in log, log[-3000:]
    assert log.count("holds a run that trained towards another target table (sha256 ") == 1, log
    path = (tmp_path / "e2e_lab.py").resolve()
    assert f"the family's file {path} has changed since the run's last start (sha256 " in log
    assert json.loads((tmp_path / "own" / "run_config.json").read_text()) == record


def test_a_run_stopped_while_validating_its_last_step_resumes_and_validates_it(tmp_path):
    """torchtitan saves the final step, then validates it; before the validation came first
    (the next test), a run stopped in between left a complete final checkpoint and no final
    validation row. Such a folder is not counted finished by the launcher, and started again it
    loads the final step, trains nothing, and validates it."""
    from prefix_titan.runs.checkpoints import sealed
    from prefix_titan.runs.folder import METRICS_LOG, read_log

    common = (
        "--checkpoint.enable",
        "--checkpoint.interval",
        "2",
        "--validation.enable",
        "--validation.freq",
        "10",
        "--validation.steps",
        "2",
    )
    log, _ = train(tmp_path, *common)
    final = [float(v) for s, v in VAL.findall(log) if s == "4"]
    assert len(final) == 1, log[-3000:]  # the final step is validated whatever the frequency
    assert "resumed at the final step" not in log  # (a run that trained validates in its loop)
    path = tmp_path / "run" / METRICS_LOG
    assert sealed(str(tmp_path / "run" / "checkpoint" / "step-4"))
    # what a stop during the final validation left: the same folder without that row
    rows = path.read_text().splitlines(keepends=True)
    (at,) = [i for i, r in enumerate(rows) if "validation_plain_ce" in json.loads(r)][-1:]
    last = json.loads(rows[at])
    assert last["step"] == 4 and last["validation_plain_ce"] == pytest.approx(final[0], abs=1e-4)
    path.write_text("".join(rows[:at] + rows[at + 1 :]))
    trained = [r["step"] for r in read_log(str(path)) if "loss" in r]
    log, _ = train(tmp_path, *common)
    assert "resumed at the final step 4: validating it" in log, log[-3000:]
    assert [r["step"] for r in read_log(str(path)) if "loss" in r] == trained  # nothing trained
    rows = [r for r in read_log(str(path)) if "validation_plain_ce" in r]
    assert [r["step"] for r in rows] == [1, 4]  # the same weights, the same validation set
    assert rows[-1]["validation_plain_ce"] == pytest.approx(last["validation_plain_ce"], rel=1e-6)
    # a finished run started again (by hand, or by a second launch of its sweep that found it
    # unfinished a moment before) adds no second validation row of its final step
    log, _ = train(tmp_path, *common)
    assert "the final step 4 is validated already" in log, log[-3000:]
    assert [r["step"] for r in read_log(str(path)) if "validation_plain_ce" in r] == [1, 4]
