"""HF export: transformers loads it unchanged and its logits equal torchtitan's (fp32, length 1024)."""

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
import transformers
from helpers import ROOT, holding_lock, train

from prefix_titan.evaluation.export import load_torchtitan_state, write_hf_folder

pytestmark = pytest.mark.slow  # exports a trained model

SEQ = 1024


@pytest.fixture(scope="module")
def run_dir(module_tmp):
    """A tiny run through torchtitan's main: DCP checkpoint at step 2, HF-format last save at 3."""
    tmp = module_tmp
    train(
        tmp,
        "--training.steps",
        "3",
        "--checkpoint.enable",
        "--checkpoint.interval",
        "2",
        "--checkpoint.last_save_model_only",
        "--checkpoint.last_save_in_hf",
        "--lr_scheduler.warmup_steps",
        "1",
    )
    return tmp


def config_args(run_dir):
    return [
        "--job.config_file",
        f"{ROOT}/train_configs/embedded_default.toml",
        "--job.dump_folder",
        str(run_dir / "run"),
        "--model.hf_assets_path",
        str(run_dir / "tokenizer"),
        "--training.seq_len",
        "64",  # as it trained (helpers.train)
    ]


def torchtitan_logits(state, model_args, tokens):
    from torchtitan.models.llama3 import Transformer

    model = Transformer(replace(model_args, max_seq_len=tokens.shape[1]))
    model.load_state_dict(state)
    with torch.no_grad():
        return model.eval()(tokens)


def hf_logits(folder, tokens, dtype=torch.float32):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    with torch.no_grad():
        return model(tokens).logits.float()


def tiny():
    from prefix_titan.model.flavors import FLAVORS

    return FLAVORS["tiny"]


@pytest.mark.parametrize("which", ["step-2", "step-3"], ids=["dcp", "last_save_in_hf"])
def test_exported_logits_equal_torchtitans(run_dir, tmp_path, which):
    from prefix_titan.evaluation.export import export

    checkpoint = str(run_dir / "run" / "checkpoint" / which)
    if which == "step-3":
        assert any(
            f.endswith(".safetensors") for f in os.listdir(checkpoint)
        )  # torchtitan's HF save
    out = export(config_args(run_dir), str(tmp_path / "hf"), checkpoint=checkpoint)
    tokens = torch.randint(
        0, tiny().vocab_size, (2, SEQ), generator=torch.Generator().manual_seed(0)
    )
    expected = torchtitan_logits(load_torchtitan_state(checkpoint, tiny()), tiny(), tokens)
    got = hf_logits(out, tokens)
    assert (got - expected).abs().max().item() < 1e-4
    assert expected.abs().max().item() > 1  # real, trained logits, not zeros
    assert [p for p in os.listdir(tmp_path) if p.startswith(".export-")] == []  # no leftovers

    from safetensors import safe_open

    with safe_open(os.path.join(out, "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}
    tok = transformers.AutoTokenizer.from_pretrained(out)
    from torchtitan.components.tokenizer import HuggingFaceTokenizer

    ours = HuggingFaceTokenizer(str(run_dir / "tokenizer"))
    text = "Return the number of items in a container."
    # as training encoded its documents: BOS first, with no setting passed to transformers
    assert tok(text)["input_ids"] == ours.encode(text, add_bos=True, add_eos=False)
    assert tok(text, add_special_tokens=False)["input_ids"] == ours.encode(text, add_bos=False)
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
    assert tok.bos_token_id == ours.bos_id and tok.eos_token_id == ours.eos_id


def test_newest_step_is_the_default(run_dir, tmp_path, capsys):
    from prefix_titan.evaluation.export import export

    export(config_args(run_dir), str(tmp_path / "hf"))
    assert "step-3" in capsys.readouterr().err


def test_bf16_export(run_dir, tmp_path):
    from prefix_titan.evaluation.export import export

    checkpoint = str(run_dir / "run" / "checkpoint" / "step-2")
    out = export(config_args(run_dir), str(tmp_path / "hf"), checkpoint=checkpoint, dtype="bf16")
    assert json.load(open(os.path.join(out, "config.json")))["dtype"] == "bfloat16"
    tokens = torch.randint(
        0, tiny().vocab_size, (1, 256), generator=torch.Generator().manual_seed(1)
    )
    expected = torchtitan_logits(load_torchtitan_state(checkpoint, tiny()), tiny(), tokens)
    got = hf_logits(out, tokens, dtype=torch.bfloat16)
    assert (got - expected).abs().max().item() < 0.25  # bf16 weights and activations


def test_rope_scaling_is_exported(run_dir, tmp_path):
    """A flavor with Llama-3.1 RoPE scaling: config.json must carry it, or logits drift."""
    from torchtitan.models.llama3.model.args import RoPEScalingArgs

    args = replace(tiny(), rope_scaling_args=RoPEScalingArgs(), max_seq_len=SEQ)  # factor 8, 8192
    # Trained weights with sharpened attention (q, k x 8): the scaled low-frequency RoPE bands
    # barely turn over 1024 positions, so only a position-sensitive model shows the difference.
    state = load_torchtitan_state(str(run_dir / "run" / "checkpoint" / "step-2"), args)
    state = {k: v * 8 if k.endswith(("wq.weight", "wk.weight")) else v for k, v in state.items()}
    out = write_hf_folder(state, args, str(run_dir / "tokenizer"), str(tmp_path / "hf"), SEQ)
    config = json.load(open(os.path.join(out, "config.json")))
    key = "rope_parameters" if "rope_parameters" in config else "rope_scaling"  # transformers 5 / 4
    assert config[key]["rope_type"] == "llama3"
    # the keys transformers 4 reads, beside version 5's rope_parameters (without them version
    # 4.57 loads theta 10,000 and no scaling: logits off by 3.3 at 1,024 positions here)
    assert config["rope_theta"] == args.rope_theta
    assert config["rope_scaling"] == {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    tokens = torch.randint(0, args.vocab_size, (1, SEQ), generator=torch.Generator().manual_seed(2))
    expected = torchtitan_logits(state, args, tokens)
    assert (hf_logits(out, tokens) - expected).abs().max().item() < 1e-4
    # Negative control: without the scaling entries the same weights give different logits.
    config["rope_scaling"] = None
    if key == "rope_parameters":
        config[key] = {"rope_type": "default", "rope_theta": args.rope_theta}
    json.dump(config, open(os.path.join(out, "config.json"), "w"))
    off = (hf_logits(out, tokens) - expected).abs().max().item()
    assert off > 1e-2, off


def test_refusals(run_dir, tmp_path):
    from prefix_titan.evaluation.export import export

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not empty"):
        export(config_args(run_dir), str(tmp_path / "busy"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty is not a finished checkpoint step"):
        export(config_args(run_dir), str(tmp_path / "out"), checkpoint=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="lies inside the checkpoint"):  # never written into
        export(config_args(run_dir), str(tmp_path / "out"), checkpoint=str(tmp_path))
    with pytest.raises(ValueError, match="--dtype must be one of bf16, fp32"):
        export(config_args(run_dir), str(tmp_path / "out"), dtype="fp16")
    with pytest.raises(  # the run's record names the tokenizer it trained with
        ValueError,
        match=r"the config gives '/nonexistent', which holds no tokenizer.json \(--model",
    ):
        export(
            [*config_args(run_dir), "--model.hf_assets_path", "/nonexistent"], str(tmp_path / "o")
        )
    unrecorded = tmp_path / "unrecorded"  # no record to name the run's: the folder is said
    shutil.copytree(run_dir / "run" / "checkpoint", unrecorded / "checkpoint")
    with pytest.raises(ValueError, match=r"model.hf_assets_path '/nonexistent' holds no tokenizer"):
        export(
            [*config_args(run_dir), "--job.dump_folder", str(unrecorded)]
            + ["--model.hf_assets_path", "/nonexistent"],
            str(tmp_path / "o"),
        )
    step2 = str(run_dir / "run" / "checkpoint" / "step-2")
    with pytest.raises(  # a folder named after one step never holds another
        ValueError, match=r"named after step 10, but the checkpoint exported is step 3 .*step-3"
    ):
        export(config_args(run_dir), str(tmp_path / "step-10"))
    export(config_args(run_dir), str(tmp_path / "step-2"), step2)
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


def test_a_missing_checkpoint_lists_the_steps_nearby(run_dir, tmp_path):
    from prefix_titan.evaluation.export import export

    missing = run_dir / "run" / "checkpoint" / "step-7"
    with pytest.raises(
        ValueError,
        match=r"--checkpoint .*step-7 does not exist; step folders nearby: .*step-2, .*step-3",
    ):
        export(config_args(run_dir), str(tmp_path / "out"), checkpoint=str(missing))
    record = run_dir / "run" / "run_config.json"  # there, but a file
    with pytest.raises(ValueError, match=r"--checkpoint .*run_config.json is a file, not a check"):
        export(config_args(run_dir), str(tmp_path / "out"), checkpoint=str(record))


def test_a_checkpoint_of_another_flavor_names_the_flavor(run_dir, tmp_path):
    from prefix_titan.evaluation.export import export

    other_flavor = [*config_args(run_dir), "--model.flavor", "debugmodel"]
    step = str(run_dir / "run" / "checkpoint" / "step-2")
    with pytest.raises(ValueError, match=r"trained model.flavor 'tiny', the config gives 'debug"):
        export(other_flavor, str(tmp_path / "o"), step)  # the run's record says so
    # Another scale's config (its flavor, its tokenizer folder, not here): both said at once,
    # with the config the run trained with
    other_scale = [*other_flavor, "--model.hf_assets_path", str(tmp_path / "no_tokenizer")]
    moved = tmp_path / "moved"  # a run recorded where its tokenizer is not: not suggested
    shutil.copytree(run_dir / "run", moved)
    record = json.loads((moved / "run_config.json").read_text())
    record["model"]["hf_assets_path"] = "./not_here"
    (moved / "run_config.json").write_text(json.dumps(record))
    with pytest.raises(
        ValueError, match=r"\(nor does the run's, read from .*--model.hf_assets_path DIR"
    ):
        export([*other_scale, "--job.dump_folder", str(moved)], str(tmp_path / "o"))
    with pytest.raises(
        ValueError,
        match=r"trained model.flavor 'tiny', the config gives 'debugmodel' \(--model.flavor "
        r"tiny\); and model.hf_assets_path .*, the config gives .*no_tokenizer', which holds no "
        r"tokenizer.json .*: export with the run's own config: --config "
        r".*embedded_default.toml --job.dump_folder",
    ):
        export(other_scale, str(tmp_path / "o"), step)
    # A run folder without its record: the checkpoint's own shapes say so.
    copy = tmp_path / "unrecorded"
    shutil.copytree(run_dir / "run" / "checkpoint" / "step-2", copy / "checkpoint" / "step-2")
    unrecorded = [*other_flavor, "--job.dump_folder", str(copy)]
    with pytest.raises(
        ValueError,
        match=r"not written by model.flavor 'debugmodel'.*it matches model.flavor 'tiny'",
    ):
        export(unrecorded, str(tmp_path / "o"), str(copy / "checkpoint" / "step-2"))
    # Outside the config's run, a checkpoint is judged by its own shapes, not by that run's record
    with pytest.raises(ValueError, match=r"not written by model.flavor 'debugmodel'"):
        export(other_flavor, str(tmp_path / "o"), str(copy / "checkpoint" / "step-2"))
    assert not (tmp_path / "o").exists()


def test_a_checkpoint_of_another_run_is_refused(run_dir, tmp_path):
    """Exporting arm B's checkpoint under arm A's config would file B's results with A."""
    from prefix_titan.evaluation.export import export
    from prefix_titan.runs.folder import EXPORT_RECORD, RUN_CONFIG, read_json, write_json

    other = tmp_path / "ce_run"
    shutil.copytree(run_dir / "run", other)
    record = read_json(str(other / RUN_CONFIG), expect=dict)
    record["objective"]["name"] = "ce"
    write_json(str(other / RUN_CONFIG), record)
    step = str(other / "checkpoint" / "step-2")
    with pytest.raises(
        ValueError,
        match=rf"--checkpoint {step} belongs to the run {other} \(objective ce\).*"
        rf"not to the run of --config .*--job.dump_folder {other}",
    ):
        export(config_args(run_dir), str(tmp_path / "hf"), step)
    assert not (tmp_path / "hf").exists()
    # With that run's folder the same export goes through and is recorded with that run.
    out = export(
        [*config_args(run_dir), "--job.dump_folder", str(other)], str(tmp_path / "hf"), step
    )
    assert read_json(os.path.join(out, EXPORT_RECORD), expect=dict)["run_dir"] == str(other)

    # A checkpoint in no recorded run is exported, recorded with no run, and filed with none.
    loose = tmp_path / "loose" / "step-2"
    shutil.copytree(run_dir / "run" / "checkpoint" / "step-2", loose)
    out = export(config_args(run_dir), str(tmp_path / "hf2"), str(loose))
    source = read_json(os.path.join(out, EXPORT_RECORD), expect=dict)
    assert source["run_dir"] is None and source["checkpoint"] == str(loose)
    from prefix_titan.evaluation.harness import file_with_run

    assert file_with_run(out, {"results": {}}) is None
    assert not (run_dir / "run" / "evals").exists()


def test_a_tokenizer_the_run_did_not_train_with_is_refused(run_dir, tmp_path):
    from tokenizers import Tokenizer

    from prefix_titan.evaluation.export import export

    step = str(run_dir / "run" / "checkpoint" / "step-2")
    relaid = tmp_path / "relaid"  # the same tokenizer, its JSON laid out anew: accepted
    shutil.copytree(run_dir / "tokenizer", relaid)
    tok = Tokenizer.from_file(str(relaid / "tokenizer.json"))
    tok.save(str(relaid / "tokenizer.json"), pretty=True)
    assert (relaid / "tokenizer.json").read_bytes() != (
        run_dir / "tokenizer" / "tokenizer.json"
    ).read_bytes()
    export(
        [*config_args(run_dir), "--model.hf_assets_path", str(relaid)], str(tmp_path / "a"), step
    )

    other = tmp_path / "other"  # two tokens' ids swapped: refused
    shutil.copytree(run_dir / "tokenizer", other)
    data = json.loads((other / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    a, b = (next(t for t, i in vocab.items() if i == n) for n in (300, 301))
    vocab[a], vocab[b] = 301, 300
    (other / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(  # named with every other difference, before the checkpoint is read
        ValueError,
        match=r"whose tokenizer.json holds another tokenizer \(--model.hf_assets_path .*tokenizer"
        r"\); and training.seq_len 64, the config gives 256, the context length the export would "
        r"state \(--training.seq_len 64\): export with the run's own config: --config "
        r".*embedded_default.toml --job.dump_folder .* --model.hf_assets_path .*tokenizer "
        r"--training.seq_len 64$",
    ):
        export(
            [*config_args(run_dir)[:-2], "--model.hf_assets_path", str(other)],
            str(tmp_path / "b"),
            step,
        )
    assert not (tmp_path / "b").exists()


HOLD_EXPORTING = (
    "import fcntl, sys, time\n"
    "f = open(sys.argv[1])\n"
    "fcntl.flock(f.fileno(), fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


def test_overwrite_replaces_an_earlier_export_and_never_the_run(run_dir, tmp_path):
    from prefix_titan.evaluation.export import EXPORTING, export
    from prefix_titan.runs.folder import EXPORT_RECORD, read_json
    from prefix_titan.runs.lock import FolderBusy

    step = str(run_dir / "run" / "checkpoint" / "step-2")
    out = str(tmp_path / "hf")
    # what exports killed before their rename left beside --out: removed where their process
    # is gone and their EXPORTING file free; a live export's (its pid, or its file held: another
    # pid namespace), another host's (a host name with a dash), and one without the file (an
    # earlier export moved aside), left
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    gone, live, held, other, old = (
        f".export@{host}@{dead.pid}@ab",
        f".export@{host}@{os.getpid()}@cd",
        f".export@{host}@{dead.pid}@ef",
        f".export@{host}-2@{dead.pid}@gh",
        f".export@{host}@{dead.pid}@ij.old",
    )
    for name in (gone, live, held, other, old):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"partial")
        if name != old:
            (tmp_path / name / EXPORTING).touch()
    holder = subprocess.Popen(  # the file held by a process the pid does not name
        [sys.executable, "-c", HOLD_EXPORTING, str(tmp_path / held / EXPORTING)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        export(config_args(run_dir), out, step)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(os.listdir(tmp_path)) == sorted(["hf", live, held, other, old])
    for name in (live, held, other, old):
        shutil.rmtree(tmp_path / name)
    record = read_json(os.path.join(out, EXPORT_RECORD), expect=dict)
    assert record["step"] == 2 and record["verified"] is True
    export(config_args(run_dir), out, step, overwrite=True)  # an earlier export: replaced
    assert sorted(os.listdir(tmp_path)) == ["hf"]  # nothing left aside
    # an evaluation of the earlier export holds its folder's lock (harness.writer_folder): the
    # export is refused, not left to put new weights under the evaluation's results
    holder = holding_lock(out, command="eval --model hf")
    try:
        with pytest.raises(FolderBusy, match=f"is being written by pid {holder.pid}"):
            export(config_args(run_dir), out, step, overwrite=True)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(os.listdir(tmp_path)) == ["hf"] and os.path.isfile(
        os.path.join(out, EXPORT_RECORD)
    )
    export(config_args(run_dir), out, step, overwrite=True)  # the evaluation gone: replaced
    assert not os.path.exists(os.path.join(out, ".writer.lock"))
    before = sorted(os.listdir(run_dir / "run"))
    with pytest.raises(ValueError, match=r"is the run folder .* that the export reads from"):
        export(config_args(run_dir), str(run_dir / "run"), step, overwrite=True)
    assert sorted(os.listdir(run_dir / "run")) == before


def test_a_runs_relative_tokenizer_is_found_from_the_folder_it_was_started_in(
    tmp_path, monkeypatch, capsys
):
    """A run records model.hf_assets_path as its config gives it (./assets/tok, relative to where
    it started); read from another working directory, the tokenizer is looked for above the run
    folder, the nearest whose tokenizer.json is the one the run recorded (a different one on the
    way is passed over); as recorded where none is, and unchanged where it is found from here."""
    from prefix_titan.evaluation.export import recorded_tokenizer
    from prefix_titan.runs.checkpoints import sha256

    project = tmp_path / "lab" / "project"
    (project / "assets" / "tok").mkdir(parents=True)
    (project / "assets" / "tok" / "tokenizer.json").write_text('{"the": "run\'s"}')
    run = project / "outputs" / "ce"
    (run.parent / "assets" / "tok").mkdir(parents=True)  # another tokenizer, nearer the run
    (run.parent / "assets" / "tok" / "tokenizer.json").write_text('{"another": 1}')
    run.mkdir()
    record = {
        "model": {"hf_assets_path": "./assets/tok"},
        "data_files": {"tokenizer.json": sha256(str(project / "assets/tok/tokenizer.json"))},
    }
    monkeypatch.chdir(tmp_path)
    assert recorded_tokenizer(record, str(run)) == str(project / "assets" / "tok")
    assert f"read from {project / 'assets' / 'tok'}, which holds" in capsys.readouterr().err
    monkeypatch.chdir(project)
    assert recorded_tokenizer(record, "outputs/ce") == "./assets/tok"  # found from here
    monkeypatch.chdir(tmp_path)
    other = {**record, "data_files": {"tokenizer.json": "0" * 64}}
    assert recorded_tokenizer(other, str(run)) == "./assets/tok"  # none: left to the refusal
    assert recorded_tokenizer({"model": record["model"]}, str(run)) == "./assets/tok"


def test_an_export_given_the_runs_own_tokenizer_file_does_not_look_for_it_again(
    tmp_path, monkeypatch, capsys
):
    """eval --all-checkpoints finds a run's relative tokenizer once for every step it exports;
    export's own check of the tokenizer given, the very file the run recorded (its sha256), looked
    for it again at each step and printed the "read from" note once per step. A tokenizer that is
    not the run's is still compared with the one the run recorded."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    from prefix_titan.evaluation.export import check_run
    from prefix_titan.runs.checkpoints import sha256
    from prefix_titan.runs.folder import RUN_CONFIG

    project = tmp_path / "project"
    tok = project / "assets" / "tok"
    tok.mkdir(parents=True)
    Tokenizer(WordLevel({"a": 0, "b": 1}, unk_token="a")).save(str(tok / "tokenizer.json"))
    run = project / "outputs" / "ce"
    (run / "checkpoint" / "step-2").mkdir(parents=True)
    record = {
        "model": {"hf_assets_path": "./assets/tok"},
        "data_files": {"tokenizer.json": sha256(str(tok / "tokenizer.json"))},
    }
    (run / RUN_CONFIG).write_text(json.dumps(record))
    monkeypatch.chdir(tmp_path)
    step = str(run / "checkpoint" / "step-2")
    for _ in range(3):
        assert check_run(str(run), str(run / "checkpoint"), step, str(tok)) == str(run)
    assert "read from" not in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    Tokenizer(WordLevel({"b": 0, "a": 1}, unk_token="a")).save(str(other / "tokenizer.json"))
    with pytest.raises(ValueError, match="is not the one the run") as e:
        check_run(str(run), str(run / "checkpoint"), step, str(other))
    assert str(e.value).endswith(f"export with --model.hf_assets_path {tok}")  # where it is found
    assert "read from" in capsys.readouterr().err  # the run's own looked for, to compare
    # the run's own file changed in place: the tokenizer it trained with is not there to export
    Tokenizer(WordLevel({"b": 0, "a": 1}, unk_token="a")).save(str(tok / "tokenizer.json"))
    monkeypatch.chdir(project)  # (where the run was started: its record's path found)
    with pytest.raises(ValueError, match=r"tokenizer.json is not the file the run .* recorded"):
        check_run(str(run), str(run / "checkpoint"), step, str(tok))
