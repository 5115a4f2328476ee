import pathlib
import subprocess
import sys
import tomllib

import pytest

import prefix_titan  # noqa: F401  (registers datasets / TrainSpec)
from prefix_titan.config import check_job_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "train_configs").glob("*.toml"))


def parse(path, *overrides):
    from torchtitan.config import ConfigManager

    return ConfigManager().parse_args(["--job.config_file", str(path), *overrides])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_parses_through_torchtitan(path):
    config = parse(path)
    check_job_config(config)  # [prefix], flavor and datasets are all valid
    assert config.model.name == "prefix_llama3"
    assert config.experimental.custom_import == "prefix_titan"


def test_generated_configs_do_not_drift():
    out = subprocess.run([sys.executable, "scripts/make_configs.py", "--check"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_sweep_is_complete():
    names = {p.stem for p in CONFIGS}
    taus = ["0.05", "0.1", "0.2", "0.5", "1.0", "2.0"]
    assert {"ce", "label_smoothing"} | {f"prefix_tau{t}" for t in taus} | {
        f"prefix_norm_tau{t}" for t in taus} <= names


def test_arms_differ_only_in_objective_and_dump_folder():
    sweep = [p for p in CONFIGS if p.name != "embedded_default.toml"]
    assert len(sweep) == 14
    stripped, prefixes, folders = [], set(), set()
    for p in sweep:
        d = tomllib.loads(p.read_text())
        prefixes.add(tuple(sorted(d.pop("prefix").items())))
        folders.add(d["job"].pop("dump_folder"))
        stripped.append(d)
    assert all(d == stripped[0] for d in stripped)
    assert len(prefixes) == len(folders) == 14  # every arm distinct, none sharing an output folder


def test_sweep_reaches_20b_tokens():
    c = parse(ROOT / "train_configs" / "ce.toml")
    tokens = c.training.steps * c.training.global_batch_size * c.training.seq_len
    assert 20e9 <= tokens < 20e9 + c.training.global_batch_size * c.training.seq_len


@pytest.mark.parametrize("override,message", [
    (["--prefix.objective", "focal"], "prefix.objective must be one of ce, label_smoothing, prefix"),
    (["--prefix.support", "all"], "prefix.support must be one of prefix, vocab"),
    (["--prefix.tau", "0"], "prefix.tau must be a finite number > 0"),
    (["--prefix.tau", "nan"], "prefix.tau must be a finite number > 0"),
    (["--prefix.epsilon", "1.0"], "prefix.epsilon must be a number in [0, 1)"),
    (["--model.flavor", "3B"], "model.flavor must be one of"),
    (["--training.dataset", "c5"], "training.dataset must be one of"),
    (["--validation.dataset", "c5"], "validation.dataset must be one of"),
    (["--validation.seq_len", "4096"], "validation.seq_len (4096) must be <= training.seq_len (256)"),
])
def test_bad_settings_are_refused(override, message):
    with pytest.raises(ValueError) as e:
        check_job_config(parse(ROOT / "train_configs" / "embedded_default.toml", *override))
    assert message in str(e.value)


def test_loss_parallel_is_refused():
    config = parse(ROOT / "train_configs" / "ce.toml", "--parallelism.tensor_parallel_degree", "2",
                   "--parallelism.no-disable-loss-parallel")
    with pytest.raises(ValueError, match="parallelism.disable_loss_parallel = true"):
        check_job_config(config)
    check_job_config(parse(ROOT / "train_configs" / "ce.toml", "--parallelism.tensor_parallel_degree", "2"))


@pytest.mark.parametrize("setting,why", [
    ("tensor_parallel_degree", "slice of the vocabulary"),
    ("pipeline_parallel_degree", "labels reach only the first pipeline stage"),
    ("context_parallel_degree", "shards the sequence but not the labels"),
])
def test_fused_loss_refuses_what_it_does_not_support(setting, why):
    config = parse(ROOT / "train_configs" / "ce.toml", "--prefix.fused_loss",
                   f"--parallelism.{setting}", "2")
    with pytest.raises(ValueError) as e:
        check_job_config(config)
    assert why in str(e.value) and f"set parallelism.{setting} = 1" in str(e.value)
    assert "prefix.fused_loss = false" in str(e.value)


def test_readme_states_the_exact_parameter_counts():
    import torch
    from torchtitan.models.llama3 import Transformer

    from prefix_titan.train_spec import prefix_llama3_args

    readme = (ROOT / "README.md").read_text()
    for flavor in ("500M", "tiny"):
        with torch.device("meta"):
            n = sum(p.numel() for p in Transformer(prefix_llama3_args[flavor]).parameters())
        assert f"{n:,}" in readme, flavor
