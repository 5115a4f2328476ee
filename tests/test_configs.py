import math
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import typing

import pytest
from helpers import ROOT, project, shipped_configs

import prefix_titan.train_spec  # noqa: F401  (registers datasets / TrainSpec)
from prefix_titan.sweep.configs import SCALES, arms
from prefix_titan.titan.checks import check_job_config, check_resume

CONFIGS = shipped_configs()


def scale_configs(scale):
    return sorted(p for p in (ROOT / SCALES[scale].out).glob("*.toml") if p.stem in arms())


def parse(path, *overrides):
    """The config as torchtitan parses it; its run folder (job.dump_folder) a fresh one of its
    own unless the overrides name one: a run the user trained from the config (in ./outputs)
    must not change what the checks here see."""
    from torchtitan.config import ConfigManager

    if "--job.dump_folder" not in overrides:
        overrides = (*overrides, "--job.dump_folder", tempfile.mkdtemp(dir=_RUNS.name))
    return ConfigManager().parse_args(["--job.config_file", str(path), *overrides])


_RUNS = tempfile.TemporaryDirectory(prefix="prefix_titan_configs_")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "train_configs")))
def test_every_config_parses_through_torchtitan(path):
    config = parse(path)
    check_job_config(config)  # [objective], flavor and datasets are all valid
    assert config.model.name == "prefix_llama3"
    assert config.experimental.custom_import == "prefix_titan.train_spec"


@pytest.mark.slow
def test_generated_configs_do_not_drift():
    out = subprocess.run(
        [sys.executable, "-m", "prefix_titan.sweep", "configs", "--check"],
        cwd=project(),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_sweep_is_complete(scale):
    names = {p.stem for p in scale_configs(scale)}
    taus = ["0.05", "0.1", "0.2", "0.5", "1.0", "2.0"]
    assert {"ce", "label_smoothing"} | {f"prefix_tau{t}" for t in taus} | {
        f"prefix_norm_tau{t}" for t in taus
    } == names


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_arms_differ_only_in_objective_and_dump_folder(scale):
    sweep = scale_configs(scale)
    assert len(sweep) == 14
    stripped, objectives, folders = [], set(), set()
    for p in sweep:
        d = tomllib.loads(p.read_text())
        objectives.add(tuple(sorted(d.pop("objective").items())))
        folders.add(d["job"].pop("dump_folder"))
        stripped.append(d)
    assert all(d == stripped[0] for d in stripped)
    assert (
        len(objectives) == len(folders) == 14
    )  # every arm distinct, none sharing an output folder
    assert folders == {f"{SCALES[scale].single}/{arm}" for arm in arms()}


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_the_pilot_is_the_500m_recipe_at_another_size():
    """Only the model size, the budget it sets and what fits one GPU may differ."""
    size = (
        "model.flavor",
        "training.steps",
        "training.local_batch_size",
        "lr_scheduler.warmup_steps",
        "activation_checkpoint.",
        "checkpoint.interval",
        "checkpoint.keep_latest_k",
        "validation.freq",
        "validation.steps",
        "validation.local_batch_size",
        "job.",
    )
    big, pilot = (
        _flat(tomllib.loads(p.read_text()))
        for p in (ROOT / "train_configs" / "ce.toml", ROOT / "train_configs" / "pilot" / "ce.toml")
    )
    differ = {k for k in set(big) | set(pilot) if big.get(k) != pilot.get(k)}
    assert differ and all(k.startswith(size) for k in differ), differ
    # the same number of validation sequences: the 500M's on its 8 GPUs, the pilot's on one
    assert big["validation.steps"] * big["validation.local_batch_size"] * 8 == (
        pilot["validation.steps"] * pilot["validation.local_batch_size"]
    )


def test_the_pilot_trains_20_tokens_per_parameter():
    import torch
    from torchtitan.models.llama3 import Transformer

    from prefix_titan.model.flavors import FLAVORS

    c = parse(ROOT / "train_configs" / "pilot" / "ce.toml")
    with torch.device("meta"):
        n = sum(p.numel() for p in Transformer(FLAVORS[c.model.flavor]).parameters())
    _fewest_even_steps(c, 20 * n, checkpoints=6)
    assert c.training.global_batch_size % c.training.local_batch_size == 0


def _fewest_even_steps(c, tokens: float, checkpoints: int) -> None:
    """The run takes the fewest steps that reach `tokens` and split into `checkpoints` equal
    intervals, checkpointed and validated at each (the report averages the last three of both:
    one window, evenly spaced, the final model included)."""
    per_step = c.training.global_batch_size * c.training.seq_len
    assert c.training.steps == checkpoints * math.ceil(tokens / per_step / checkpoints)
    assert c.checkpoint.interval * checkpoints == c.training.steps
    assert c.validation.freq == c.checkpoint.interval


def test_sweep_reaches_20b_tokens():
    c = parse(ROOT / "train_configs" / "ce.toml")
    _fewest_even_steps(c, 20e9, checkpoints=10)


@pytest.mark.parametrize(
    "override,message",
    [
        (
            ["--checkpoint.keep_latest_k", "1"],
            "checkpoint.keep_latest_k must be 0 (keep every step) or >= 2",
        ),
        (
            ["--checkpoint.last_save_in_hf"],
            "set checkpoint.last_save_model_only = true with it",
        ),
        (
            ["--objective.name", "focal"],
            "objective.name must be one of ce, label_smoothing, prefix",
        ),
        (["--objective.support", "all"], "objective.support must be one of prefix, vocab"),
        (["--objective.tau", "0"], "objective.tau must be a finite number >= 0.001"),
        (["--objective.tau", "nan"], "objective.tau must be a finite number >= 0.001"),
        (["--objective.epsilon", "1.0"], "objective.epsilon must be a number in [0, 1)"),
        (["--objective.row_block_mib", "0"], "objective.row_block_mib must be an integer >= 1"),
        (
            ["--objective.row_block_mib", "8", "--compile.enable", "--compile.components", "loss"],
            "objective.row_block_mib sets the eager row passes' block, and the loss is compiled",
        ),
        (
            ["--objective.position_gamma", "0"],
            "objective.position_gamma must be a number in (0, 1]",
        ),
        (
            ["--objective.position_gamma", "1.01"],
            "objective.position_gamma must be a number in (0, 1]",
        ),
        (
            ["--objective.name", "my_lab_missing.targets:suffix"],
            "cannot import 'my_lab_missing.targets'",
        ),
        (["--model.flavor", "3B"], "model.flavor must be one of"),
        (["--training.dataset", "c5"], "training.dataset must be one of"),
        (["--validation.dataset", "c5"], "validation.dataset must be one of"),
        (
            ["--training.dataloader.num_workers", "2"],
            "training.dataloader.num_workers must be 0; got 2",
        ),
        (
            ["--validation.dataloader.num_workers", "1"],
            "validation.dataloader.num_workers must be 0; got 1",
        ),
        (
            ["--validation.seq_len", "4096"],
            "validation.seq_len (4096) must be <= training.seq_len (256)",
        ),
    ],
)
def test_bad_settings_are_refused(override, message):
    with pytest.raises(ValueError) as e:
        check_job_config(parse(ROOT / "train_configs" / "embedded_default.toml", *override))
    assert message in str(e.value)


def test_loss_parallel_is_refused():
    config = parse(
        ROOT / "train_configs" / "ce.toml",
        "--parallelism.tensor_parallel_degree",
        "2",
        "--parallelism.no-disable-loss-parallel",
    )
    with pytest.raises(ValueError, match="parallelism.disable_loss_parallel = true"):
        check_job_config(config)
    check_job_config(
        parse(ROOT / "train_configs" / "ce.toml", "--parallelism.tensor_parallel_degree", "2")
    )


@pytest.mark.parametrize(
    "setting,why",
    [
        ("tensor_parallel_degree", "slice of the vocabulary"),
        ("pipeline_parallel_degree", "labels reach only the first pipeline stage"),
        ("context_parallel_degree", "shards the sequence but not the labels"),
    ],
)
def test_fused_loss_refuses_what_it_does_not_support(setting, why):
    config = parse(
        ROOT / "train_configs" / "ce.toml",
        "--objective.fused_loss",
        f"--parallelism.{setting}",
        "2",
    )
    with pytest.raises(ValueError) as e:
        check_job_config(config)
    assert why in str(e.value) and f"set parallelism.{setting} = 1" in str(e.value)
    assert "objective.fused_loss = false" in str(e.value)


def _another_value(f, hint):
    """A value of ObjectiveSpec field `f` (type `hint`) other than its default, as TOML and as
    command-line text: (value, TOML text, command-line words)."""
    if f.metadata.get("choices"):
        value = next(c for c in f.metadata["choices"] if c != f.default)
    elif hint is bool:
        value = not f.default
        return value, str(value).lower(), [f"--objective.{'' if value else 'no-'}{f.name}"]
    elif float in typing.get_args(hint) or hint is float:
        value = 0.75
    elif int in typing.get_args(hint) or hint is int:
        value = 3
    elif str in typing.get_args(hint) or hint is str:
        value = "my_family.module:targets" if f.name == "name" else "k=1"
    else:
        raise AssertionError(f"objective.{f.name}: add a value of its type {hint} to this test")
    toml = f'"{value}"' if isinstance(value, str) else str(value)
    return value, toml, [f"--objective.{f.name}", str(value)]


@pytest.mark.slow
def test_every_objective_field_is_read_from_the_toml_and_the_command_line(tmp_path):
    """Each field of ObjectiveSpec, the one place an objective's option is added, reaches the
    job config from `[objective]` of a TOML and from `--objective.<field>` (torchtitan's parser
    reads the dataclass): a field added with a type this parser cannot read fails here."""
    import dataclasses

    from prefix_titan.objectives.spec import ObjectiveSpec

    base = (ROOT / "train_configs" / "ce.toml").read_text()
    assert base.count("[objective]\n") == 1
    hints = typing.get_type_hints(ObjectiveSpec)
    for f in dataclasses.fields(ObjectiveSpec):
        value, toml, words = _another_value(f, hints[f.name])
        before, section = base.split("[objective]\n")
        section, *after = section.split("\n[", 1)
        kept = [line for line in section.split("\n") if not line.startswith(f"{f.name} =")]
        section = "\n".join([f"{f.name} = {toml}", *kept])
        (tmp_path / "c.toml").write_text("\n[".join([f"{before}[objective]\n{section}", *after]))
        assert tomllib.loads((tmp_path / "c.toml").read_text())["objective"][f.name] == value
        from_toml = getattr(parse(tmp_path / "c.toml").objective, f.name)
        from_cli = getattr(parse(ROOT / "train_configs" / "ce.toml", *words).objective, f.name)
        assert from_toml == from_cli == value != f.default, (f.name, from_toml, from_cli)
        assert type(from_toml) is type(from_cli) is type(value), f.name


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU refusal")
def test_triton_kernel_is_refused_at_start_up_without_a_gpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    config = parse(ROOT / "train_configs" / "ce.toml", "--objective.kernel", "triton")
    with pytest.raises(ValueError, match="no[n]e is visible: use objective.kernel = 'pytorch'"):
        check_job_config(config)
    config = parse(ROOT / "train_configs" / "ce.toml", "--objective.kernel", "cuda")
    with pytest.raises(ValueError, match="objective.kernel must be one of auto, pytorch, triton"):
        check_job_config(config)


@pytest.mark.parametrize("page", ["README.md", "docs/experiment.md"])
def test_the_docs_state_the_exact_parameter_counts(page):
    import torch
    from torchtitan.models.llama3 import Transformer

    from prefix_titan.model.flavors import FLAVORS

    text = (ROOT / page).read_text()
    for flavor in ("500M", "pilot", "tiny"):
        with torch.device("meta"):
            model = Transformer(FLAVORS[flavor])
        n = sum(p.numel() for p in model.parameters())
        assert f"{n:,}" in text, flavor
        if flavor == "pilot" and page != "README.md":
            embeddings = model.tok_embeddings.weight.numel() + model.output.weight.numel()
            assert f"{n - embeddings:,}" in text, "pilot without embeddings"


def test_a_position_gamma_and_an_import_path_parse_from_the_command_line():
    config = parse(
        ROOT / "train_configs" / "embedded_default.toml",
        "--objective.position_gamma",
        "0.99",
        "--objective.name",
        "prefix_titan.objectives.families:ce_targets",
    )
    check_job_config(config)
    assert config.objective.position_gamma == 0.99
    assert parse(ROOT / "train_configs" / "ce.toml").objective.position_gamma is None


def test_position_gamma_refuses_context_parallel_and_document_masking():
    config = parse(
        ROOT / "train_configs" / "ce.toml",
        "--objective.position_gamma",
        "0.9",
        "--parallelism.context_parallel_degree",
        "2",
    )
    with pytest.raises(ValueError, match="set parallelism.context_parallel_degree = 1"):
        check_job_config(config)
    config = parse(
        ROOT / "train_configs" / "ce.toml",
        "--objective.position_gamma",
        "0.9",
        "--data.document_mask",
    )
    with pytest.raises(ValueError, match="but data.document_mask = true makes each document"):
        check_job_config(config)


def test_a_config_with_the_former_prefix_section_is_refused(tmp_path):
    old = (
        (ROOT / "train_configs" / "ce.toml")
        .read_text()
        .replace('[objective]\nname = "ce"', '[prefix]\nobjective = "ce"')
    )
    assert "[prefix]" in old
    path = tmp_path / "old.toml"
    path.write_text(old)
    with pytest.raises(ValueError) as e:
        parse(path)
    assert "the [prefix] section was renamed [objective]" in str(e.value)
    assert "`objective` to `name`" in str(e.value)


def _record_run(folder, config, with_checkpoint=True):
    import json

    from prefix_titan.runs.folder import RUN_CONFIG, run_record

    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN_CONFIG).write_text(json.dumps(run_record(config)))
    if with_checkpoint:
        (folder / "checkpoint" / "step-300").mkdir(parents=True)


@pytest.mark.slow
def test_resuming_a_checkpoint_with_another_objective_is_refused(tmp_path):
    default = ROOT / "train_configs" / "embedded_default.toml"
    folder = tmp_path / "run"
    _record_run(folder, parse(default, "--job.dump_folder", str(folder)))
    with pytest.raises(ValueError) as e:
        check_job_config(
            parse(
                default,
                "--job.dump_folder",
                str(folder),
                "--objective.name",
                "ce",
                "--optimizer.lr",
                "1e-3",
            )
        )
    message = str(e.value)
    assert "holds a checkpoint (step-300) of a run with other settings" in message
    lines = message.splitlines()
    assert lines[1].strip() == "objective.name: 'prefix' -> 'ce'"  # the objective first
    assert "optimizer.lr: 0.003 -> 0.001" in message
    assert "give it another job.dump_folder" in message
    assert message.splitlines()[-1].startswith(
        "A resumed run may change only: training.steps (with the schedule's length kept), "
        "metrics.*, checkpoint.interval"
    )
    # What a resumed run may change: steps (on the run's schedule), logging, checkpointing and
    # validation cadence.
    check_job_config(
        parse(
            default,
            "--job.dump_folder",
            str(folder),
            "--training.steps",
            "200",
            "--lr_scheduler.total_steps",
            "300",
            "--metrics.log_freq",
            "5",
            "--checkpoint.interval",
            "50",
            "--validation.freq",
            "50",
        )
    )
    # Not: another schedule (steps changed, the schedule drawn over them), what validation reads.
    for args, said in (
        (("--training.steps", "600"), "the learning-rate schedule's length (lr_scheduler."),
        (("--training.steps", "600", "--lr_scheduler.total_steps", "600"), "300 -> 600"),
        (
            ("--validation.dataset", "embedded_docs"),
            "validation.dataset: 'embedded_docs_validation'",
        ),
        (("--validation.seq_len", "64"), "validation.seq_len: "),
    ):
        with pytest.raises(ValueError) as e:
            check_job_config(parse(default, "--job.dump_folder", str(folder), *args))
        assert said in str(e.value), str(e.value)
    assert "keep --lr_scheduler.total_steps 300" in str(_refusal(default, folder, "600"))
    # past the schedule's length, any run: torchtitan's rate does not hold there
    with pytest.raises(ValueError, match=r"lr_scheduler.total_steps \(300\) is below training"):
        check_job_config(
            parse(default, "--training.steps", "600", "--lr_scheduler.total_steps", "300")
        )
    # A fresh folder: nothing to resume. A folder without a checkpoint, or checkpointing off:
    # still another run's record and metrics, so still refused (one arm per folder).
    check_job_config(
        parse(default, "--job.dump_folder", str(tmp_path / "new"), "--objective.name", "ce")
    )
    _record_run(tmp_path / "empty", parse(default), with_checkpoint=False)
    # a run that failed as it started (its record only: no step, metrics row or evaluation) does
    # not hold its folder: the next run replaces its record
    _record_run(tmp_path / "failed", parse(default), with_checkpoint=False)
    check_job_config(
        parse(default, "--job.dump_folder", str(tmp_path / "failed"), "--objective.name", "ce")
    )
    (tmp_path / "empty" / "prefix_metrics.jsonl").write_text('{"step": 1}\n')
    for folder_, off in ((tmp_path / "empty", ()), (folder, ("--checkpoint.no-enable",))):
        with pytest.raises(ValueError, match="holds the record .* of a run with other settings"):
            check_job_config(
                parse(default, "--job.dump_folder", str(folder_), "--objective.name", "ce", *off)
            )


def _refusal(default, folder, steps):
    try:
        check_job_config(
            parse(default, "--job.dump_folder", str(folder), "--training.steps", steps)
        )
    except ValueError as e:
        return e
    raise AssertionError("not refused")


def test_a_checkpoint_past_training_steps_is_refused_not_resumed_to_nothing(tmp_path):
    """A folder whose newest finished step is past training.steps: resuming it trains nothing
    (torchtitan would start at the next step and stop), so it is refused, naming both."""
    from prefix_titan.runs.checkpoints import DCP_METADATA

    default = ROOT / "train_configs" / "embedded_default.toml"
    folder = tmp_path / "run"
    args = ("--job.dump_folder", str(folder), "--lr_scheduler.total_steps", "400")
    _record_run(folder, parse(default, *args))
    (folder / "checkpoint" / "step-300" / DCP_METADATA).write_bytes(b"")
    with pytest.raises(ValueError) as e:
        check_job_config(parse(default, *args, "--training.steps", "40"))
    assert "holds a checkpoint at step 300, past training.steps (40)" in str(e.value)
    assert "--checkpoint.load_step" in str(e.value)
    assert "Give --training.steps from 300 to 400 (lr_scheduler.total_steps)" in str(e.value)
    for fine in (("--training.steps", "300"), ("--training.steps", "400")):
        check_resume(parse(default, *args, *fine))  # the end, or further on: resumed as asked
    (folder / "checkpoint" / "step-20").mkdir()
    (folder / "checkpoint" / "step-20" / DCP_METADATA).write_bytes(b"")
    check_resume(parse(default, *args, "--training.steps", "40", "--checkpoint.load_step", "20"))


def test_a_copy_that_torchtitan_reads_as_a_step_is_refused(tmp_path):
    """torchtitan's loader and its keep_latest_k purge read `step-N` anywhere in a name: a copy
    `step-4-backup` or `old-step-12` in the checkpoint folder could be resumed from or deleted,
    so a run is refused naming each and its step; `backup-4`, a file without the pattern and a
    purge's own `.purged-step-N` aside pass."""
    from prefix_titan.runs.checkpoints import DCP_METADATA, purge_older_steps

    default = ROOT / "train_configs" / "embedded_default.toml"
    folder = tmp_path / "run"
    args = ("--job.dump_folder", str(folder), "--training.steps", "300")
    _record_run(folder, parse(default, *args), with_checkpoint=False)
    ckpt = folder / "checkpoint"
    for name in ("step-4", "step-4-backup", "old-step-12", "backup-4", ".purged-step-2"):
        (ckpt / name).mkdir(parents=True)
        (ckpt / name / DCP_METADATA).write_bytes(b"")
    (ckpt / "notes.txt").write_text("x")
    with pytest.raises(ValueError) as e:
        check_resume(parse(default, *args))
    assert str(e.value).startswith(
        f"{ckpt} holds old-step-12 (step 12), step-4-backup (step 4): torchtitan reads a name "
        "that holds `step-<N>` as checkpoint step N"
    ), e.value
    assert "Move each out of the checkpoint folder, or rename it" in str(e.value)
    assert "(`old-step-12` as `backup-12`)" in str(e.value)
    (ckpt / "step-4-backup").rename(tmp_path / "step-4-backup")
    (ckpt / "old-step-12").rename(ckpt / "old-12")
    check_resume(parse(default, *args))
    # the package's own purge leaves such a copy alone and deletes its aside
    (ckpt / "step-4-backup").mkdir()
    (ckpt / "step-5").mkdir()
    assert purge_older_steps(str(ckpt), 1) == [str(ckpt / "step-4")]
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "backup-4",
        "notes.txt",
        "old-12",
        "step-4-backup",
        "step-5",
    ]


def test_checkpoints_without_their_record_are_refused(tmp_path):
    """A folder whose run record is gone but whose checkpoints are there: a resume could be
    checked against nothing (another objective or learning rate would train on and be recorded
    as the run's), so it is refused, naming the steps; without checkpoint loading it is not."""
    from prefix_titan.runs.checkpoints import DCP_METADATA

    default = ROOT / "train_configs" / "embedded_default.toml"
    folder = tmp_path / "run"
    (folder / "checkpoint" / "step-20").mkdir(parents=True)
    (folder / "checkpoint" / "step-20" / DCP_METADATA).write_bytes(b"")
    (folder / "checkpoint" / "step-30").mkdir()  # unfinished: not named
    with pytest.raises(ValueError) as e:
        check_resume(parse(default, "--job.dump_folder", str(folder)))
    assert str(e.value).startswith(
        f"{folder} holds checkpoints (step-20) but no run_config.json: the record of the "
        "settings that trained them is gone"
    )
    assert "start afresh in another job.dump_folder (or move checkpoint/ out)" in str(e.value)
    check_resume(parse(default, "--job.dump_folder", str(folder), "--checkpoint.no-enable"))


def test_a_sweep_runs_resume_refusals_name_the_sweeps_way_out(tmp_path):
    """Checked for a sweep launch (which sets job.dump_folder itself), the refusals of a
    checkpoint past training.steps and of a resume with other settings name the launch's ways
    out (the override after --, another --sweep-dir), not another job.dump_folder."""
    from prefix_titan.runs.checkpoints import DCP_METADATA

    default = ROOT / "train_configs" / "embedded_default.toml"
    folder = tmp_path / "run"
    args = ("--job.dump_folder", str(folder), "--lr_scheduler.total_steps", "400")
    _record_run(folder, parse(default, *args))
    (folder / "checkpoint" / "step-300" / DCP_METADATA).write_bytes(b"")
    for run, says in (
        (parse(default, *args, "--training.steps", "40"), "drop the --training.steps override"),
        (
            parse(default, *args, "--optimizer.lr", "1e-3"),
            "an override after --, drop or change it",
        ),
    ):
        with pytest.raises(ValueError) as e:
            check_job_config(run, sweep=True)
        assert says in str(e.value) and "another --sweep-dir" in str(e.value), str(e.value)
        assert "job.dump_folder for" not in str(e.value) and "give it another" not in str(e.value)
        with pytest.raises(ValueError, match="another job.dump_folder"):
            check_job_config(run)  # a run of its own: its own way out


def test_a_run_recorded_before_a_setting_existed_resumes_with_its_default(tmp_path):
    """A record without objective.kernel and objective.fused_chunk_tokens (a run from before
    they existed): resuming at their defaults is the same run, setting one is not."""
    import json

    from prefix_titan.runs.folder import RUN_CONFIG

    default = ROOT / "train_configs" / "embedded_default.toml"
    folder = tmp_path / "run"
    args = ("--job.dump_folder", str(folder), "--objective.fused_loss")
    _record_run(folder, parse(default, *args))
    record = json.loads((folder / RUN_CONFIG).read_text())
    del record["objective"]["kernel"], record["objective"]["fused_chunk_tokens"]
    (folder / RUN_CONFIG).write_text(json.dumps(record))
    check_job_config(parse(default, *args))
    with pytest.raises(ValueError) as e:
        check_job_config(parse(default, *args, "--objective.fused_chunk_tokens", "512"))
    # compared as resolved: the tiny flavor's CPU default of then (and now) against the setting
    assert "objective.fused_chunk_tokens: 128 -> 512" in str(e.value)
    assert "objective.kernel:" not in str(e.value)
    assert "compared as resolved on cpu" in str(e.value)


def test_a_resume_whose_settings_build_another_target_table_is_refused(tmp_path):
    """The table's digest is recorded beside the settings: a run that trained (a checkpoint) is
    not trained on towards another table; one that trained nothing, a record without a digest
    and the same table are no refusal. The settings' own check passes over the digest."""
    import json

    import torch

    from prefix_titan.objectives.table import TargetTable
    from prefix_titan.runs.folder import RUN_CONFIG, TARGET_TABLE
    from prefix_titan.titan.checks import check_table_unchanged

    idx = torch.arange(6)[:, None].repeat(1, 2)
    weight = torch.tensor([[0.9, 0.1]]).repeat(6, 1)
    table = TargetTable(idx, weight, torch.zeros(6))
    same = TargetTable(idx.clone(), weight.clone(), torch.zeros(6))
    nudged = weight.clone()
    nudged[3] = torch.tensor([0.8, 0.2])
    assert table.sha256 == same.sha256 != TargetTable(idx, nudged, torch.zeros(6)).sha256
    assert table.sha256 != TargetTable(idx, weight, torch.full((6,), 1e-9)).sha256
    assert table.sha256 == TargetTable(idx, weight.double(), -torch.zeros(6)).sha256
    default = ROOT / "train_configs" / "embedded_default.toml"
    folder = tmp_path / "run"
    config = parse(default, "--job.dump_folder", str(folder))
    _record_run(folder, config)  # with a checkpoint
    record = json.loads((folder / RUN_CONFIG).read_text())
    check_table_unchanged(config, "f" * 64)  # recorded before digests were: not compared
    (folder / RUN_CONFIG).write_text(json.dumps({**record, TARGET_TABLE: table.sha256}))
    check_job_config(config)  # the settings' check passes over the digest
    check_table_unchanged(config, same.sha256)
    with pytest.raises(ValueError) as e:
        check_table_unchanged(config, "f" * 64)
    assert str(e.value).startswith(
        f"{folder} holds a run that trained towards another target table (sha256 "
        f"{table.sha256[:12]}...) than objective.name 'prefix' builds now with the same "
        "settings (ffffffffffff...): its family's code, this package's or a library the table is "
        "computed with has changed since"
    ), str(e.value)
    shutil.rmtree(folder / "checkpoint")  # a run that trained nothing: replaced, not compared
    check_table_unchanged(config, "f" * 64)


def test_ranks_that_build_different_tables_are_refused_alike(monkeypatch):
    """Every rank builds its own table: the digests are gathered, and any difference is refused
    on every rank (each sees all of them), naming each rank's digest."""
    import torch.distributed as dist

    from prefix_titan.titan.metrics import _one_table

    assert _one_table("a" * 64) == "a" * 64  # one process: nothing to gather
    for others, refused in ((["a" * 64, "a" * 64], False), (["a" * 64, "b" * 64], True)):
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        monkeypatch.setattr(dist, "get_world_size", lambda: 2)

        def gather(out, obj, others=others):
            out[:] = others

        monkeypatch.setattr(dist, "all_gather_object", gather)
        if not refused:
            assert _one_table("a" * 64) == "a" * 64
            continue
        with pytest.raises(ValueError) as e:
            _one_table("a" * 64)
        assert str(e.value).startswith(
            "the ranks built different target tables (rank 0: aaaaaaaaaaaa..., rank 1: "
            "bbbbbbbbbbbb...): the family must build the same table in every process"
        ), str(e.value)


def test_a_resume_compares_the_kernel_and_chunk_as_the_device_resolves_them(tmp_path):
    """objective.kernel = 'auto' runs what a record of 'pytorch' ran on a CPU: the same run; a
    record whose device ran the Triton rows (RESOLVED) is not resumed with the PyTorch rows, and
    the message says how the two were compared. A record keeps what its device resolved."""
    import json

    from prefix_titan.runs.folder import RESOLVED, RUN_CONFIG
    from prefix_titan.titan.checks import run_execution

    default = ROOT / "train_configs" / "embedded_default.toml"
    folder = tmp_path / "run"
    args = ("--job.dump_folder", str(folder), "--objective.fused_loss")
    job = parse(default, *args)
    assert job.objective.kernel == "auto"
    assert run_execution(job) == {"kernel": "pytorch", "fused_chunk_tokens": 128}
    _record_run(folder, job)
    record = json.loads((folder / RUN_CONFIG).read_text())
    record["objective"]["kernel"] = "pytorch"  # a run recorded before 'auto' existed
    (folder / RUN_CONFIG).write_text(json.dumps(record))
    check_job_config(parse(default, *args))
    check_job_config(parse(default, *args, "--objective.fused_chunk_tokens", "128"))
    record[RESOLVED] = {"kernel": "triton", "fused_chunk_tokens": 128}  # ran on a GPU
    (folder / RUN_CONFIG).write_text(json.dumps(record))
    with pytest.raises(ValueError) as e:
        check_job_config(parse(default, *args))
    assert "objective.kernel: 'triton' -> 'pytorch'" in str(e.value)
    assert "compared as resolved on cpu" in str(e.value)


def test_a_config_without_an_objective_is_refused(tmp_path):
    import re

    text = (ROOT / "train_configs" / "embedded_default.toml").read_text()
    path = tmp_path / "no_objective.toml"
    path.write_text(re.sub(r"\[objective\]\n(.+\n)+", "", text))
    assert "[objective]" not in path.read_text()
    with pytest.raises(
        ValueError, match="objective.name is not set: every run names its objective"
    ):
        check_job_config(parse(path))
    check_job_config(parse(path, "--objective.name", "ce"))  # named on the command line


@pytest.mark.slow
def test_the_launcher_needs_a_config_file_and_says_so_before_loading_anything(tmp_path):
    from prefix_titan.train import check_config_file

    no_config = check_config_file(["--training.steps", "3"])
    assert "needs --job.config_file FILE" in no_config and "embedded_default.toml" in no_config
    assert check_config_file(["--job.config_file", str(tmp_path / "x.toml")]).endswith(
        "x.toml: no such file"
    )
    assert check_config_file(["--job.config_file", "train_configs/nope.toml"]).endswith(
        f"train_configs/nope.toml: no such file (from {os.getcwd()}: run from the project folder)"
    )
    # torchtitan 0.3's way of naming a model and its config
    said = check_config_file(["--module", "prefix_llama3", "--config=500M"])
    assert said.startswith("--module --config=500M: torchtitan 0.3 names a model and its config")
    assert "adapts torchtitan 0.2.x, whose runs read a TOML: --job.config_file FILE" in said
    broken = tmp_path / "broken.toml"
    broken.write_text("[training\nsteps = 3\n")
    assert f"{broken} is not valid TOML (" in check_config_file([f"--job.config_file={broken}"])
    assert "(at line 1" in check_config_file(["--job.config_file", str(broken)])
    assert check_config_file(["--job.config_file", str(CONFIGS[0])]) is None
    for given, written in (
        (["--local-ranks-filter", "0"], "torchrun --nproc_per_node=N --local-ranks-filter 0 -m"),
        (["--local_ranks_filter=0"], "torchrun --nproc_per_node=N --local_ranks_filter=0 -m"),
        (["--nproc_per_node=2"], "torchrun --nproc_per_node=2 -m"),
        (
            ["--standalone", "--nnodes", "1"],
            "torchrun --nproc_per_node=N --standalone --nnodes 1 -m",
        ),
    ):
        said = check_config_file(["--job.config_file", str(CONFIGS[0]), *given])
        keys = [a.partition("=")[0] for a in given if a.startswith("--")]
        one = len(keys) == 1
        assert said.startswith(
            f"{', '.join(keys)} {'is an option' if one else 'are options'} of torchrun, not of the "
            f"trainer: give {'it' if one else 'them'} before -m, as in {written} prefix_titan.train"
        ), said
    # the trainer's own settings, and a value that looks like a flag, are not torchrun's
    assert check_config_file(["--job.config_file", str(CONFIGS[0]), "--debug.seed", "-5"]) is None
    good = (ROOT / "train_configs" / "embedded_default.toml").read_text()
    for old, new, words in (
        ("[objective]", "[prefix]", "the [prefix] section was renamed [objective]"),
        ('custom_import = "prefix_titan.train_spec"', "", '[experimental] custom_import = "prefix'),
        (
            'custom_config_module = "prefix_titan.config"',
            "",
            'custom_config_module = "prefix_titan',
        ),
        ('name = "prefix_llama3"', 'name = "llama3"', "[model] name is 'llama3'; python -m prefix"),
        (good, "", "[model] name is 'unset'"),  # an empty file
    ):
        path = tmp_path / "c.toml"
        path.write_text(good.replace(old, new))
        problem = check_config_file(["--job.config_file", str(path)])
        assert problem is not None and problem.startswith(f"{path}: ") and words in problem, problem
    from prefix_titan.train import TRAIN_SPEC_NAME
    from prefix_titan.train_spec import TRAIN_SPEC_NAME as registered

    assert TRAIN_SPEC_NAME == registered
    out = subprocess.run(
        [sys.executable, "-m", "prefix_titan.train"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "needs --job.config_file FILE" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow  # a process that imports torchtitan
def test_a_misspelt_option_points_at_our_command_help():
    out = subprocess.run(
        [sys.executable, "-m", "prefix_titan.train", "--job.config_file", str(CONFIGS[0])]
        + ["--objective.tauu", "0.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "--objective.tau FLOAT" in text, text[-2000:]
    assert "run python -m prefix_titan.train --help" in " ".join(text.split())
    assert "train.py" not in text


def test_an_unknown_toml_key_names_the_file_the_section_and_our_help(tmp_path, capsys):
    from prefix_titan.train import parse_config

    config = tmp_path / "typo.toml"
    config.write_text(
        (ROOT / "train_configs/embedded_default.toml")
        .read_text()
        .replace("[training]\n", "[training]\nstepz = 3\n")
    )
    with pytest.raises(SystemExit) as e:
        parse_config(["--job.config_file", str(config)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"{config}: [training] has no setting 'stepz'" in err
    assert "List every setting with `python -m prefix_titan.train --help`." in err
    assert "run_train.sh" not in err


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "tau = 0.5",
            "tua = 0.5",
            "[objective] has no setting 'tua'. Did you mean 'tau' (for 'tua')?",
        ),
        (
            "[objective]\n",
            "[objectve]\n",
            "has no section [objectve]. Did you mean 'objective' (for 'objectve')?",
        ),
        (  # nothing close: the section's settings
            "[objective]\n",
            "[objective]\ntemperature = 0.5\n",
            "[objective] has no setting 'temperature'. [objective] sets: name, tau, normalize, "
            "support, epsilon, options, fused_loss, fused_chunk_tokens, kernel, row_block_mib, "
            "position_gamma, position_start. List",
        ),
        (
            "[training]\n",
            "[training]\nzzz = 3\n",
            "[training] has no setting 'zzz'. [training] sets",
        ),
    ],
)
def test_a_misspelt_toml_name_gets_the_close_ones(tmp_path, capsys, old, new, message):
    from prefix_titan.train import parse_config

    text = (ROOT / "train_configs/embedded_default.toml").read_text()
    assert text.count(old) == 1
    config = tmp_path / "typo.toml"
    config.write_text(text.replace(old, new))
    with pytest.raises(SystemExit) as e:
        parse_config(["--job.config_file", str(config)])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_every_unknown_toml_name_is_named_at_once(tmp_path):
    """Before torchtitan parses the file (it stops at the first unknown name), every unknown
    section and setting is named, each with the close ones; every shipped config has none."""
    from prefix_titan.train import check_config_file

    text = (ROOT / "train_configs/embedded_default.toml").read_text()
    config = tmp_path / "typos.toml"
    config.write_text(
        text.replace("tau = ", "tua = ").replace("[optimizer]", "[optimiser]") + "\n[training2]\n"
    )
    problem = check_config_file(["--job.config_file", str(config)])
    assert problem.startswith(f"{config} has 3 unknown names:\n  "), problem
    assert "no setting 'tua' in [objective]. Did you mean 'tau' (for 'tua')?" in problem
    assert "no section [optimiser]. Did you mean 'optimizer' (for 'optimiser')?" in problem
    assert "no section [training2]." in problem and problem.endswith("--help`.")
    for shipped in shipped_configs():
        assert check_config_file(["--job.config_file", str(shipped)]) is None, shipped


def test_a_switch_given_a_value_says_how_to_write_it(capsys):
    from prefix_titan.train import parse_config

    with pytest.raises(SystemExit):
        parse_config(["--job.config_file", str(CONFIGS[0]), "--objective.fused_loss", "yes"])
    err = capsys.readouterr().err
    assert "--objective.fused_loss is a switch and takes no value ('yes')" in err
    assert "--objective.no-fused_loss to turn it off" in err


def test_the_pilot_keeps_the_checkpoints_of_an_evaluation_curve():
    """At least four evenly spaced steps and the last are kept (keep_latest_k = 0: all), so that
    eval --all-checkpoints draws a learning curve and the report can average the last ones."""
    c = parse(ROOT / "train_configs" / "pilot" / "ce.toml")
    steps, interval = c.training.steps, c.checkpoint.interval
    assert c.checkpoint.enable and c.checkpoint.keep_latest_k == 0
    saved = [s for s in range(interval, steps + 1, interval)] + [steps]
    assert len(set(saved)) >= 5 and saved[-1] == steps
    assert all(b - a == interval for a, b in zip(saved[:-2], saved[1:-1]))


def test_a_value_torchtitan_asserts_on_as_it_parses_is_named(tmp_path, capsys):
    """torchtitan's config asserts `validation.steps` > 0 or -1 as it is built, before the
    package's own checks see it: the run and a sweep launch's checks name the setting, the form
    allowed and the value given (on the command line or in the TOML), not an AssertionError."""
    from torchtitan.config import ConfigManager

    from prefix_titan.titan.preflight import _parse
    from prefix_titan.train import parse_config

    config = str(CONFIGS[0])
    with pytest.raises(SystemExit) as e:
        parse_config(["--job.config_file", config, "--validation.steps", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: validation.steps must be a finite number >= 1 or -1; got 0\n", err
    toml = tmp_path / "steps.toml"
    text = (ROOT / "train_configs/embedded_default.toml").read_text()
    toml.write_text(text.replace("steps = -1  #", "steps = -3  #"))
    with pytest.raises(SystemExit):
        parse_config([f"--job.config_file={toml}"])
    assert (
        "validation.steps must be a finite number >= 1 or -1; got -3\n" in capsys.readouterr().err
    )
    with pytest.raises(ValueError, match=r"validation.steps must .* >= 1 or -1; got -2$"):
        _parse(ConfigManager(), ["--job.config_file", config, "--validation.steps=-2"])


def test_a_resume_that_reads_other_files_under_the_same_names_is_refused(
    tmp_path, embedded_tokenizer_dir
):
    """The record keeps the sha256 of the tokenizer's files (and of a shard folder's manifest):
    the same paths holding other files (a tokenizer edited in place) are a conflict; a record
    from before the files were recorded resumes unchecked."""
    import json
    import shutil

    from prefix_titan.runs.folder import DATA_FILES, RUN_CONFIG, run_record
    from prefix_titan.titan.checks import data_files

    tok = tmp_path / "tok"
    shutil.copytree(embedded_tokenizer_dir, tok)
    default = ROOT / "train_configs" / "embedded_default.toml"
    folder = tmp_path / "run"
    args = ("--job.dump_folder", str(folder), "--model.hf_assets_path", str(tok))
    job = parse(default, *args)
    files = data_files(job)
    assert set(files) == {
        "tokenizer.json",
        "tokenizer_config.json",
        "training corpus",
        "validation corpus",
    }, files
    (folder / "checkpoint" / "step-300").mkdir(parents=True)
    (folder / RUN_CONFIG).write_text(json.dumps({**run_record(job), DATA_FILES: files}))
    check_job_config(parse(default, *args))  # the same files: the same run
    spec = json.loads((tok / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    a, b = list(vocab)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # two ids swapped: the same names, other tokens
    (tok / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError) as e:
        check_job_config(parse(default, *args))
    assert f"{DATA_FILES}.tokenizer.json: {files['tokenizer.json']!r} -> " in str(e.value)
    record = json.loads((folder / RUN_CONFIG).read_text())
    del record[DATA_FILES]
    (folder / RUN_CONFIG).write_text(json.dumps(record))
    check_job_config(parse(default, *args))  # recorded before: not checked


def test_a_resume_that_reads_another_embedded_corpus_is_refused(
    tmp_path, embedded_tokenizer_dir, monkeypatch
):
    """The embedded corpus comes from the Python installation that reads it: its splits' sha256
    are recorded with the files (data_files), so a run resumed under another Python (another
    corpus by the same dataset name) is refused naming the split, while a record written before
    the corpus was recorded resumes unchecked on it."""
    import json

    from prefix_titan.data import corpus
    from prefix_titan.runs.folder import DATA_FILES, RUN_CONFIG, run_record
    from prefix_titan.titan.checks import data_files

    default = ROOT / "train_configs" / "embedded_default.toml"
    folder = tmp_path / "run"
    args = ("--job.dump_folder", str(folder), "--model.hf_assets_path", str(embedded_tokenizer_dir))
    job = parse(default, *args)
    files = data_files(job)
    assert files["training corpus"] == corpus.embedded_sha256("train")
    assert files["validation corpus"] == corpus.embedded_sha256("validation")
    assert files["training corpus"] != files["validation corpus"]
    (folder / "checkpoint" / "step-300").mkdir(parents=True)
    (folder / RUN_CONFIG).write_text(json.dumps({**run_record(job), DATA_FILES: files}))
    check_job_config(parse(default, *args))  # the same corpus: the same run
    documents = corpus.embedded_documents()
    monkeypatch.setattr(corpus, "embedded_documents", lambda: documents[:-40])  # another Python
    with pytest.raises(ValueError) as e:
        check_job_config(parse(default, *args))
    assert f"{DATA_FILES}.training corpus: {files['training corpus']!r} -> " in str(e.value)
    record = json.loads((folder / RUN_CONFIG).read_text())
    for key in ("training corpus", "validation corpus"):
        del record[DATA_FILES][key]
    (folder / RUN_CONFIG).write_text(json.dumps(record))
    check_job_config(parse(default, *args))  # recorded before the corpus was: not checked


def test_the_last_line_says_whether_the_run_trained(tmp_path, capsys):
    """A run resumed from an earlier step with --checkpoint.load_step trains on to
    training.steps and says where its checkpoint went; one that started at training.steps says
    nothing trained (the newest step was the same before and after either way)."""
    from prefix_titan.train import _report_checkpoint

    def config(*overrides):
        path = ROOT / "train_configs/embedded_default.toml"
        return parse(path, "--job.dump_folder", str(tmp_path), "--training.steps", "40", *overrides)

    for step in (30, 40):
        (tmp_path / "checkpoint" / f"step-{step}").mkdir(parents=True)
    newest = str(tmp_path / "checkpoint" / "step-40")
    _report_checkpoint(config("--checkpoint.load_step", "30"), newest)
    assert capsys.readouterr().out == f"DCP checkpoint written to {newest}\n"
    _report_checkpoint(config(), newest)
    assert "nothing trained: the run had reached training.steps (40) already" in (
        capsys.readouterr().out
    )
    _report_checkpoint(config(), str(tmp_path / "checkpoint" / "step-30"))
    assert capsys.readouterr().out == f"DCP checkpoint written to {newest}\n"
    (tmp_path / "checkpoint" / "step-40" / "model.safetensors.index.json").write_text("{}")
    _report_checkpoint(config(), str(tmp_path / "checkpoint" / "step-30"))  # last_save_in_hf
    assert capsys.readouterr().out == (
        f"Hugging Face (safetensors) checkpoint written to {newest}\n"
    )
    # resumed from step 30 to train to 35: its own step-35 named, not the step-40 saved before
    (tmp_path / "checkpoint" / "step-35").mkdir()
    shorter = config("--checkpoint.load_step", "30", "--training.steps", "35")
    _report_checkpoint(shorter, newest)
    ckpt = tmp_path / "checkpoint"
    assert capsys.readouterr().out == (
        f"DCP checkpoint written to {ckpt / 'step-35'} ({ckpt} also holds step-40, saved before "
        "this run started from step 30: a resume without --checkpoint.load_step loads the "
        "newest, step-40)\n"
    )


def test_the_version_is_that_of_the_copy_that_imports(tmp_path):
    """A copy earlier on the path runs, whatever pip installed elsewhere: its version is read
    from the distribution installed beside it (torchtitan's own __version__ reads whichever
    distribution is installed), else from its __version__."""
    import types

    from prefix_titan.titan.version import imported_version

    (tmp_path / "torchtitan").mkdir()
    (tmp_path / "torchtitan" / "__init__.py").write_text("")
    module = types.ModuleType("torchtitan")
    module.__file__ = str(tmp_path / "torchtitan" / "__init__.py")
    module.__version__ = "0.2.2"  # what the installed distribution would say
    assert imported_version(module) == "0.2.2"
    info = tmp_path / "torchtitan-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchtitan\nVersion: 0.1.0\n")
    assert imported_version(module) == "0.1.0"


@pytest.mark.parametrize(
    "found, adapted",
    [("0.2.2", True), ("0.2.9.dev0", True), ("0.2.1", False), ("0.3.0", False), (None, False)],
)
def test_only_torchtitan_0_2_from_0_2_2_is_adapted(monkeypatch, capsys, found, adapted):
    """The torchtitan that imports is checked by its own version: another is one error line
    naming it and the pip pin, exit 2 (0.1 used to fail deep in the CPU set-up with a
    traceback)."""
    from importlib.metadata import version as installed

    import torchtitan

    from prefix_titan.titan import version
    from prefix_titan.titan.version import torchtitan_problem
    from prefix_titan.train import main

    assert version.imported_version(torchtitan) == installed("torchtitan")  # (pip's, in CI)
    monkeypatch.setattr(version, "imported_version", lambda module: found)
    problem = torchtitan_problem()
    assert (problem is None) is adapted, problem
    if adapted:
        return
    assert f"{torchtitan.__file__} is " in problem
    assert (f"torchtitan {found};" if found else "names no version (0.1 or older)") in problem
    assert problem.endswith("pip install 'torchtitan>=0.2.2,<0.3'")
    config = str(ROOT / "train_configs/embedded_default.toml")
    monkeypatch.setattr(sys, "argv", ["prefix_titan.train", "--job.config_file", config])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2 and capsys.readouterr().err == f"error: {problem}\n"


@pytest.mark.parametrize("raised", ["table", "family", "labels"])
def test_a_refusal_inside_the_trainer_is_one_error_and_leaves_no_empty_folders(
    raised, tmp_path, monkeypatch, capsys
):
    """A target table refused, a family's code that raises (both while torchtitan builds the
    trainer) and labels outside the vocabulary (after a step): `error: ...`, status 2, no
    traceback but the family's own; a refused run's empty folders, lock and untrained record are
    removed (the refusal before the trainer does the same: titan/refusal.py); a run that
    trained keeps its folder."""
    import json

    import torchtitan.train

    from prefix_titan.objectives.families import FamilyError
    from prefix_titan.objectives.kernel import LabelError
    from prefix_titan.objectives.table import TableError
    from prefix_titan.runs.folder import RUN_CONFIG
    from prefix_titan.runs.lock import RunLock
    from prefix_titan.train import main

    run = tmp_path / "outputs" / "run"
    error = {
        "table": TableError("row 0 sums to 0.5, not 1"),
        "family": FamilyError("target family 'x:y' raised KeyError: 'nope'"),
        "labels": LabelError("step 3: 2 label(s) of the batch were neither a token id ..."),
    }[raised]

    def refused(trainer_cls):
        (run / "comm_traces").mkdir(parents=True)
        RunLock(str(run)).acquire()
        (run / RUN_CONFIG).write_text(json.dumps({"objective": {"name": "ce"}}))
        if raised == "labels":  # after a step: the run trained
            (run / "checkpoint" / "step-2").mkdir(parents=True)
        if raised == "family":
            try:
                {}["nope"]
            except KeyError as e:
                raise error from e
        raise error

    monkeypatch.setattr(torchtitan.train, "main", refused)
    monkeypatch.chdir(tmp_path)
    _train_in_process(monkeypatch, "outputs/run")
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {error}" in err or f"its target table could not be built ({error})" in err
    assert ("Traceback" in err) is (raised == "family"), err
    if raised == "labels":
        assert (run / RUN_CONFIG).exists() and (run / "checkpoint" / "step-2").is_dir()
    else:
        assert not (tmp_path / "outputs").exists(), list(tmp_path.rglob("*"))


def _train_in_process(monkeypatch, dump_folder: str) -> None:
    """`prefix_titan.train` of the embedded default into `dump_folder`, run in this process as
    rank 0 (torchtitan's main patched by the caller), the CPU set-up left alone."""
    monkeypatch.setattr("prefix_titan.titan.cpu.use_cpu", lambda: None)  # (no global patching)
    monkeypatch.setenv("RANK", "0")
    config = str(ROOT / "train_configs/embedded_default.toml")
    argv = ["prefix_titan.train", "--job.config_file", config, "--job.dump_folder", dump_folder]
    monkeypatch.setattr(sys, "argv", argv)


def test_a_preemptions_sigterm_is_one_line_naming_what_resumes(tmp_path, monkeypatch, capsys):
    """SIGTERM (a scheduler's preemption; torchrun forwards it to the ranks) unwinds the training
    loop as Ctrl-C does: one line saying what resumes the run, exit 143 (128 + 15), and the
    process's own SIGTERM handler back in place after."""
    import os
    import signal
    import time

    import torchtitan.train

    from prefix_titan.train import main

    def preempted(trainer_cls):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # (the handler raises here)
        raise AssertionError("SIGTERM did not stop the loop")

    monkeypatch.setattr(torchtitan.train, "main", preempted)
    _train_in_process(monkeypatch, str(tmp_path))
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 143
    assert capsys.readouterr().err == (
        "terminated: no checkpoint of this run was saved; the same command starts it again\n"
    )
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_is_one_line_naming_the_checkpoint_to_resume(tmp_path, monkeypatch, capsys):
    """An interrupted run ends with one line (not the training loop's traceback), exit 130,
    naming the newest checkpoint the same command resumes from. The step it saved just before
    the interruption had no recorded checksums (a resume refused it until sealed by hand): the
    interruption records them. A step it did not save is not blessed: the line says to seal it."""
    import torchtitan.train

    from prefix_titan.runs.checkpoints import record_step, sealed
    from prefix_titan.train import main

    step = tmp_path / "checkpoint" / "step-5"

    def save():
        step.mkdir(parents=True)
        (step / ".metadata").write_bytes(b"x")
        (step / "__0_0.distcp").write_bytes(b"y")

    def interrupted(trainer_cls):
        save()
        raise KeyboardInterrupt

    monkeypatch.setattr(torchtitan.train, "main", interrupted)
    _train_in_process(monkeypatch, str(tmp_path))
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 130
    assert capsys.readouterr().err == (
        f"interrupted: the newest checkpoint is {step}; the same command resumes from it\n"
    )
    assert sealed(str(step))  # (both files recorded; the fake .metadata is none to check)
    shutil.rmtree(step)

    def interrupted_with_nothing_saved(trainer_cls):
        raise KeyboardInterrupt

    save()  # there before the run started, unrecorded: not this run's to record
    monkeypatch.setattr(torchtitan.train, "main", interrupted_with_nothing_saved)
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert err.startswith(f"interrupted: the newest checkpoint, {step}, was saved but the run")
    assert f"`python -m prefix_titan.runs.checkpoints seal {step}`, then the same" in err
    assert err.count("\n") == 1 and not sealed(str(step))
    shutil.rmtree(step)

    def sealed_then_interrupted(trainer_cls):
        try:
            interrupted(trainer_cls)
        finally:
            record_step(str(step), 0)

    monkeypatch.setattr(torchtitan.train, "main", sealed_then_interrupted)
    with pytest.raises(SystemExit):
        main()
    assert capsys.readouterr().err == (
        f"interrupted: the newest checkpoint is {step}; the same command resumes from it\n"
    )


def test_rank_0_waits_for_the_other_ranks_checksums_before_naming_a_seal(tmp_path, monkeypatch):
    """Each rank records its own files as an interrupted run stops: rank 0 waits for the others
    (it said to seal a step another rank was still recording), and names the seal where they
    never come."""
    import threading
    from types import SimpleNamespace

    from prefix_titan import train
    from prefix_titan.runs.checkpoints import record_step

    step = tmp_path / "checkpoint" / "step-5"
    step.mkdir(parents=True)
    (step / ".metadata").write_bytes(b"x")
    config = SimpleNamespace(
        job=SimpleNamespace(dump_folder=str(tmp_path)),
        checkpoint=SimpleNamespace(enable=True, folder="checkpoint", load_step=-1),
    )
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(train, "RECORD_WAIT", 1.0)
    assert "`python -m prefix_titan.runs.checkpoints seal" in train._resume_advice(config)
    threading.Timer(0.3, record_step, (str(step), 0)).start()  # (the other rank, a moment late)
    assert train._resume_advice(config).startswith(f"the newest checkpoint is {step}; the same")


def test_each_start_of_a_run_is_recorded_with_its_software_and_compared_by_nothing(tmp_path):
    """run_config.json keeps each start of the run (when, where, the newest checkpoint it found,
    the versions it ran): a resume under another torch is visible in the record; a resume, a
    sweep's comparison of runs and a damaged earlier record are not affected by it."""
    import json
    from importlib.metadata import version
    from types import SimpleNamespace

    import torch

    from prefix_titan.runs.checkpoints import DCP_METADATA, record_step
    from prefix_titan.runs.folder import RUN_CONFIG, STARTS, run_record
    from prefix_titan.sweep.runs import matched_settings
    from prefix_titan.titan.metrics import saved_steps, start_record

    def start(folder, checkpoint):
        return start_record(str(folder), checkpoint, saved_steps(str(folder), checkpoint))

    folder = tmp_path / "run"
    checkpoint = SimpleNamespace(enable=True, folder="checkpoint", load_step=-1)
    (first,) = start(folder, checkpoint)  # a fresh folder
    assert first["newest_checkpoint"] is None and first["load_step"] is None
    assert (first["torch"], first["torchtitan"]) == (torch.__version__, version("torchtitan"))
    assert first["prefix_titan"] == version("prefix_titan") and first["host"] and first["at"]
    step = folder / "checkpoint" / "step-8"
    step.mkdir(parents=True)
    (step / DCP_METADATA).write_bytes(b"")
    record_step(str(step), 0)
    default = ROOT / "train_configs" / "embedded_default.toml"
    job = parse(default, "--job.dump_folder", str(folder))
    older = {**first, "torch": "2.0.0"}
    (folder / RUN_CONFIG).write_text(json.dumps({**run_record(job), STARTS: [older]}))
    checkpoint.load_step = 4
    starts = start(folder, checkpoint)
    assert starts[0] == older and (starts[1]["newest_checkpoint"], starts[1]["load_step"]) == (8, 4)
    assert matched_settings({**run_record(job), STARTS: starts}) == matched_settings(
        {**run_record(job), STARTS: [older]}
    )
    check_job_config(parse(default, "--job.dump_folder", str(folder)))  # the same run resumed
    (folder / RUN_CONFIG).write_text("{")  # damaged: its starts are not read (the checks say it)
    assert len(start(folder, checkpoint)) == 1


def test_a_resume_reads_its_tokenizer_however_its_folder_is_named(
    tmp_path, embedded_tokenizer_dir, monkeypatch
):
    """A folder setting whose files the run hashed (DATA_FILES) may name the same files otherwise
    (`dir/`, an absolute path, a copy elsewhere): the same sha256 resume; a folder holding other
    files is refused, naming the setting and its files."""
    import json

    from prefix_titan.runs.folder import DATA_FILES, RUN_CONFIG
    from prefix_titan.titan.checks import data_files

    default = ROOT / "train_configs" / "embedded_default.toml"
    folder = tmp_path / "run"
    tokenizer = shutil.copytree(embedded_tokenizer_dir, tmp_path / "tok")
    monkeypatch.chdir(tmp_path)
    args = ("--job.dump_folder", str(folder), "--lr_scheduler.total_steps", "400")
    config = parse(default, *args, "--model.hf_assets_path", "./tok")
    _record_run(folder, config)
    record = json.loads((folder / RUN_CONFIG).read_text())
    record[DATA_FILES] = data_files(config)
    (folder / RUN_CONFIG).write_text(json.dumps(record))
    assert set(record[DATA_FILES]) >= {"tokenizer.json", "tokenizer_config.json"}
    for spelled in ("tok/", str(tokenizer), str(shutil.copytree(tokenizer, tmp_path / "copy"))):
        check_resume(parse(default, *args, "--model.hf_assets_path", spelled))
    changed = shutil.copytree(tokenizer, tmp_path / "changed")
    (changed / "tokenizer_config.json").write_text('{"model_max_length": 7}')
    with pytest.raises(ValueError) as e:
        check_resume(parse(default, *args, "--model.hf_assets_path", str(changed)))
    assert f"model.hf_assets_path: './tok' -> {str(changed)!r}" in str(e.value)
    assert "data_files.tokenizer_config.json" in str(e.value)


def test_a_checkpoint_past_training_steps_names_the_steps_it_may_resume_with():
    """The refusal said "Raise --training.steps above N to train on", which the schedule's check
    then refused where the schedule had ended: it names what a resume may give."""
    from prefix_titan.titan.checks import _steps_to_give

    assert _steps_to_give(300, 400) == (
        "Give --training.steps from 300 to 400 (lr_scheduler.total_steps)"
    )
    assert _steps_to_give(10, 10).startswith("Give --training.steps 10: the run trained to the end")
    assert "Give --training.steps the run's own" in _steps_to_give(10, None)


def test_a_run_whose_last_step_was_saved_in_hf_format_is_not_handed_to_the_dcp_loader(tmp_path):
    """checkpoint.last_save_in_hf saves the last step as the model alone: the same command again
    ended in torchtitan's FileNotFoundError (.metadata), as it reads the step as DCP. Refused
    before: nothing to train at its end, else resumed from the newest DCP step."""
    from prefix_titan.runs.checkpoints import DCP_METADATA, HF_INDEX

    default = ROOT / "train_configs" / "embedded_default.toml"
    folder = tmp_path / "run"
    args = ("--job.dump_folder", str(folder), "--lr_scheduler.total_steps", "20")
    args += ("--checkpoint.last_save_in_hf", "--checkpoint.last_save_model_only")
    _record_run(folder, parse(default, *args, "--training.steps", "10"))
    for step, marker in ((6, DCP_METADATA), (10, HF_INDEX)):
        (folder / "checkpoint" / f"step-{step}").mkdir(parents=True)
        (folder / "checkpoint" / f"step-{step}" / marker).write_bytes(b"{}")
    with pytest.raises(ValueError) as e:
        check_job_config(parse(default, *args, "--training.steps", "10"))
    said = str(e.value)
    assert "holds step-10 saved in Hugging Face format (checkpoint.last_save_in_hf)" in said
    assert "The run trained to step 10: nothing to train" in said, said
    with pytest.raises(ValueError, match="resume from step-6 with --checkpoint.load_step 6"):
        check_job_config(parse(default, *args, "--training.steps", "12"))
    check_resume(parse(default, *args, "--training.steps", "10", "--checkpoint.load_step", "6"))
    # a sweep launch's finished run is skipped, not loaded: not refused (its relaunch goes on)
    check_resume(parse(default, *args, "--training.steps", "10"), finished=True, sweep=True)
    with pytest.raises(ValueError) as e:  # more steps asked of a sweep's runs: its ways out
        check_job_config(parse(default, *args, "--training.steps", "12"), sweep=True)
    assert "drop the --training.steps override after --" in str(e.value)
    assert "load_step" not in str(e.value) and "job.dump_folder for" not in str(e.value)
    # a seed checkpoint saved in HF format: made again as DCP
    shutil.rmtree(folder / "checkpoint")
    (folder / "checkpoint" / "step-0").mkdir(parents=True)
    (folder / "checkpoint" / "step-0" / HF_INDEX).write_bytes(b"{}")
    with pytest.raises(ValueError, match="create the seed checkpoint again without"):
        check_job_config(parse(default, *args, "--training.steps", "10"))


@pytest.mark.parametrize("name", ["run_config.json", "prefix_metrics.jsonl"])
def test_a_linked_record_or_log_is_refused_before_anything_is_written(tmp_path, name):
    """A run folder whose record or metrics log is a symbolic link (to another run's, say): refused
    by the start's checks, naming the link, not by the writer after torchtitan built the trainer
    (a traceback, a new record left behind)."""
    other = tmp_path / "other"
    other.mkdir()
    (other / name).write_text("{}\n")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / name).symlink_to(other / name)
    default = ROOT / "train_configs" / "embedded_default.toml"
    with pytest.raises(ValueError) as e:
        check_job_config(parse(default, "--job.dump_folder", str(folder)))
    assert f"{folder / name} is a symbolic link (to {other / name})" in str(e.value)
    assert sorted(os.listdir(folder)) == [name] and (other / name).read_text() == "{}\n"


@pytest.mark.parametrize("how", ["errno", "low space", "checkpoint save"])
def test_a_full_disk_is_one_line_naming_what_resumes(tmp_path, monkeypatch, capsys, how):
    """A save that runs out of space ended the run in torch's traceback, naming neither the disk
    nor the resume: one line says the file system is full and what resumes the run (where the
    error does not say ENOSPC, torch's own RuntimeError, the guess from the space left comes
    after the traceback), exit 1; any other failure is raised as it was."""
    import errno
    import shutil as shutil_module
    from collections import namedtuple

    import torchtitan.train
    from torch.distributed.checkpoint.api import CheckpointException

    from prefix_titan.train import main

    usage = namedtuple("usage", "total used free")
    free = 1 * 2**20 if how == "low space" else 50 * 2**30
    monkeypatch.setattr(shutil_module, "disk_usage", lambda folder: usage(0, 0, free))
    inner = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "__0_0.distcp"))
    error = (
        OSError(errno.ENOSPC, "No space left on device")
        if how == "errno"
        else CheckpointException("save", {0: (inner, None)})  # (what dcp.save raises: wrapped)
        if how == "checkpoint save"
        else RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    )

    def full(trainer_cls):
        raise error

    monkeypatch.setattr(torchtitan.train, "main", full)
    _train_in_process(monkeypatch, str(tmp_path))
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 1
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: the file system holding {tmp_path} is full, ")
    assert line.endswith(
        "free space there; no checkpoint of this run was saved; the same command starts it again"
    )
    assert ("Traceback" in err) == (how == "low space")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda folder: usage(0, 0, 50 * 2**30))
    with pytest.raises(type(error)):  # plenty of space, no ENOSPC: not said to be the disk's
        if how == "errno":
            error.errno = errno.EIO
        inner.errno = errno.EIO
        main()
