"""What several test files share: the objective settings they sweep, seeded inputs, running a loss
forward and backward, comparing with the dense references, short trainings of the embedded
default, and loading a script of scripts/ as a module. The ground truth of every kernel test is
`prefix_titan.objectives.reference` (the dense [N, V] target)."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import torch

from prefix_titan.objectives import (
    IGNORE_INDEX,
    SUPPORTS,
    TAU_SWEEP,
    ObjectiveSpec,
    RowKernel,
    build_plan,
    fused_target_loss,
    row_weights,
    target_loss,
)
from prefix_titan.objectives.reference import reference_fused_loss, reference_loss
from prefix_titan.train import local_command

ROOT = Path(__file__).resolve().parent.parent


def shipped_configs() -> list[Path]:
    """The checkout's train_configs/**/*.toml as the package ships them: the configs `sweep
    configs` writes for the built-in arms, and the others that git tracks (every other one
    outside a git checkout); not a project's own arms' configs, nor its own files beside them."""
    from prefix_titan.sweep.configs import _generated_for_its_arm, arm_specs, file_name

    built_in = {file_name(spec.arm_name()) for spec in arm_specs()}
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "train_configs"], cwd=ROOT, capture_output=True, text=True
        )
        tracked = {ROOT / p for p in out.stdout.split("\0") if p} if out.returncode == 0 else None
    except OSError:  # no git here
        tracked = None
    out = []
    for path in sorted((ROOT / "train_configs").rglob("*.toml")):
        if _generated_for_its_arm(path):
            shipped = path.stem in built_in
        else:  # a hand-written config (embedded_default.toml): the checkout's where git says so
            shipped = not tracked or path in tracked
        if shipped:
            out.append(path)
    return out


@functools.cache
def project() -> Path:
    """A project folder as the checkout ships it (its train_configs/, shipped_configs), for the
    tests that run the sweep's commands on the package's own arms: a checkout used as a project
    folder may hold arms of its own (sweep_arms.toml, docs/objectives.md) and their configs,
    which are not the package's. Made once per test process, removed at its exit."""
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="prefix_titan_project_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for path in shipped_configs():
        target = folder / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return folder


ODD_VOCAB = 4099  # the embedded BPE's 4,096 tokens padded to a size that is not a power of two

# -- objective settings --------------------------------------------------------------------------


def sweep_specs(taus=TAU_SWEEP) -> list[ObjectiveSpec]:
    """ce, label smoothing, and prefix at each tau x normalization x support."""
    return [ObjectiveSpec("ce"), ObjectiveSpec("label_smoothing", epsilon=0.1)] + [
        ObjectiveSpec("prefix", tau=tau, normalize=norm, support=support)
        for tau in taus
        for norm in (False, True)
        for support in SUPPORTS
    ]


FOUR_SPECS = {
    "ce": ObjectiveSpec("ce"),
    "label_smoothing": ObjectiveSpec("label_smoothing", epsilon=0.1),
    "prefix_tau0.05": ObjectiveSpec("prefix", tau=0.05),
    "prefix_norm_tau2_vocab": ObjectiveSpec("prefix", tau=2.0, normalize=True, support="vocab"),
}
"""One of each kind: plain CE, uniform background, a sharp prefix target, a vocab-wide one."""


def plan_of(table, spec: ObjectiveSpec | None = None, dim=64, compile=False, **settings):
    """The loss plan of `table` on the CPU: `spec`'s, or that of a prefix spec with `settings`
    (a model of width `dim`: the fused head's default chunk size)."""
    spec = spec or ObjectiveSpec("prefix", **settings)
    return build_plan(spec, table, device_type="cpu", dim=dim, compile=compile)


# -- seeded inputs and one forward/backward ------------------------------------------------------


def fresh_logits(V, batch=97, seq=1, dtype=torch.float32, scale=4.0, ignored=0.1, gold=None):
    """Logits [batch, seq, V] of std `scale` and labels (drawn from `gold` when given), with a
    share `ignored` of them ignored; from the test's seeded generator."""
    logits = (torch.randn(batch, seq, V) * scale).to(dtype)
    if gold is None:
        labels = torch.randint(0, V, (batch, seq))
    else:
        labels = gold[torch.randint(0, len(gold), (batch, seq))]
    labels[torch.rand(batch, seq) < ignored] = IGNORE_INDEX
    return logits, labels


def fresh_head(V, n=150, dtype=torch.float32, dim=47, ignored=0.1):
    """Hidden states [n, dim], head weight [V, dim] (logits of std ~3.5) and labels [n]."""
    h = torch.randn(n, dim).to(dtype)
    w = (torch.randn(V, dim) * 3.5 / dim**0.5).to(dtype)
    labels = torch.randint(0, V, (n,))
    labels[torch.rand(n) < ignored] = IGNORE_INDEX
    return h, w, labels


def run_logits(fn, logits, labels):
    """(objective, plain CE, gradient of the logits) of fn(logits, labels), the objective
    back-propagated with a non-unit upstream gradient."""
    x = logits.clone().requires_grad_()
    objective, ce = fn(x, labels)
    (objective * 0.37).backward()
    assert x.grad.dtype == logits.dtype
    return objective.detach().double().cpu(), ce.double().cpu(), x.grad.float().cpu()


def run_head(fn, h, w, labels):
    """(objective, plain CE, grad h, grad W) of fn(h, w, labels), as run_logits."""
    h, w = h.clone().requires_grad_(), w.clone().requires_grad_()
    objective, ce = fn(h, w, labels)
    (objective * 0.37).backward()
    assert h.grad.dtype == h.dtype and w.grad.dtype == w.dtype
    parts = (objective.detach().double(), ce.double(), h.grad.float(), w.grad.float())
    return tuple(t.cpu() for t in parts)


def kernel_fn(table, gamma=None, kernel=RowKernel.PYTORCH, device="cpu", loss=target_loss, **kw):
    """fn(logits [..., V], labels [...]) through the unfused kernel (or `loss`, e.g. compiled)."""
    tensors = table.tensors(device)

    def fn(x, y):
        rw = row_weights(y, gamma)
        return loss(x.reshape(-1, x.shape[-1]), y.reshape(-1), tensors, rw, kernel=kernel, **kw)

    return fn


def fused_fn(table, gamma=None, device="cpu", **kw):
    """fn(h, w, labels) through the fused head (labels keep their sequence shape for weighting)."""
    tensors = table.tensors(device)

    def fn(h, w, y):
        h = h.reshape(-1, h.shape[-1])
        return fused_target_loss(h, w, y.reshape(-1), tensors, row_weights(y, gamma), **kw)

    return fn


def reference_fn(table, gamma=None, device="cpu", dtype=torch.float32):
    table = table.to(device)
    return lambda x, y: reference_loss(x, y, table, gamma, dtype=dtype)


def reference_head_fn(table, gamma=None, device="cpu"):
    table = table.to(device)
    return lambda h, w, y: reference_fused_loss(h, w, y, table, gamma)


LOGIT_PARTS = ("objective", "plain CE", "gradient")
HEAD_PARTS = ("objective", "plain CE", "grad h", "grad W")


def assert_parts_close(got, want, tol: dict, seed: int, what: str = "", parts=LOGIT_PARTS):
    """Each part equal within `tol`, the failure naming the part and the seed; all finite."""
    for g, w, part in zip(got, want, parts):
        torch.testing.assert_close(
            g, w.to(g.dtype), **tol, msg=lambda m, p=part: f"{what}{p} (seed {seed}): {m}"
        )
        assert torch.isfinite(g).all(), f"{what}{part} (seed {seed}) is not finite"


# -- trainings of the embedded default -----------------------------------------------------------

STEP = re.compile(r"(?<!validate )step:\s+(\d+)\s+loss:\s+([-\d.naif]+)")
"""A training step's loss line (not a validation's: a step due one is validated before its own
line is logged)"""
CE = re.compile(r"step:\s+(\d+)\s+plain_ce:\s+([-\d.naif]+)")
VAL = re.compile(r"validate step:\s+(\d+)\s+plain_ce:\s+([-\d.naif]+)\s+perplexity")

_EMBEDDED_BPE: list[str] = []  # one trained copy per test process, copied where runs want it


def embedded_tokenizer_at(path) -> str:
    """The embedded BPE at `path` (runs refuse to create it anywhere but its documented place)."""
    import shutil
    import tempfile

    from prefix_titan.data.tokenizers import train_embedded_tokenizer

    if not os.path.exists(os.path.join(path, "tokenizer.json")):
        if not _EMBEDDED_BPE:
            _EMBEDDED_BPE.append(train_embedded_tokenizer(tempfile.mkdtemp(prefix="embedded_bpe_")))
        shutil.copytree(_EMBEDDED_BPE[0], path, dirs_exist_ok=True)
    return str(path)


def tiny_hf_model(folder, vocab_size: int, tokens: int | None, seed: int = 0):
    """A tiny random Llama saved with save_pretrained, with a word-level tokenizer.json of
    `tokens` ids (none: no tokenizer.json)."""
    import transformers
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(str(folder))
    if tokens is not None:
        tok = Tokenizer(WordLevel({f"w{i}": i for i in range(tokens)}, unk_token="w0"))
        tok.pre_tokenizer = Whitespace()
        tok.save(os.path.join(folder, "tokenizer.json"))
    return folder


def train(tmp, *overrides, nproc=1, name="run", check=True, script=None):
    """Run a short embedded-default job; returns (stdout+stderr, {step: loss}). `script`: a
    Python file run in place of `-m prefix_titan.train` (one rank), given the same arguments."""
    embedded_tokenizer_at(tmp / "tokenizer")
    args = local_command(
        "--job.config_file",
        "train_configs/embedded_default.toml",
        "--job.dump_folder",
        str(tmp / name),
        "--model.hf_assets_path",
        str(tmp / "tokenizer"),
        "--metrics.log_freq",
        "1",
        "--training.seq_len",
        "64",
        "--training.local_batch_size",
        "4",
        "--training.steps",
        "4",
        "--validation.seq_len",
        "64",
        "--lr_scheduler.warmup_steps",
        "2",
        "--validation.no-enable",
        "--checkpoint.no-enable",
        *overrides,
        nproc=nproc,
    )
    if script is not None:
        assert nproc == 1 and args[1:3] == ["-m", "prefix_titan.train"], args
        args[1:3] = [str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    if check:
        assert out.returncode == 0, log[-4000:]
    losses = {}
    for step, loss in STEP.findall(log):
        losses.setdefault(int(step), float(loss))
    return log, losses


def train_all(tmp, runs: dict, nproc=1) -> dict:
    """{name: train(tmp, *overrides, name=name, nproc=nproc)} for independent runs {name:
    overrides}, as many at once as the cores hold (each run's ranks take one core each)."""
    from concurrent.futures import ThreadPoolExecutor

    embedded_tokenizer_at(tmp / "tokenizer")  # once, before the runs share it
    workers = max(1, min(len(runs), (os.cpu_count() or 1) // nproc))
    with ThreadPoolExecutor(workers) as pool:
        done = {n: pool.submit(train, tmp, *o, nproc=nproc, name=n) for n, o in runs.items()}
        return {n: f.result() for n, f in done.items()}


# -- fake run folders, as training and evaluation write them ------------------------------------

TASKS = ("hellaswag", "piqa", "winogrande_debiased", "arc_easy", "arc_challenge", "sciq")
ITEMS = 400


@functools.lru_cache(maxsize=1)
def _base_config_json():
    """The 500M ce arm's job config as run_config.json records it."""
    from torchtitan.config import ConfigManager

    config = ConfigManager().parse_args(
        ["--job.config_file", str(ROOT / "train_configs" / "ce.toml")]
    )
    return json.dumps(dataclasses.asdict(config), default=str)


def base_config():
    return json.loads(_base_config_json())


def make_run(root, name, objective, score, seed=1234, eval_kind="results", lr=None, gains=None):
    """A finished run: validation CE 3.5 − score, and per-item outcomes whose accuracy is about
    0.3/0.5 + score (drawn with a generator seeded by the seed: the same items are hard in every
    arm of a seed), the results being their means; `gains` overrides `score` for given tasks."""
    import numpy as np

    from prefix_titan.evaluation.harness import write_items
    from prefix_titan.evaluation.probes import BLANK_TASKS, PROBE_TASKS
    from prefix_titan.runs.folder import METRICS_LOG

    folder = root / name / f"seed{seed}"
    folder.mkdir(parents=True)
    config = base_config()
    config["objective"].update(objective)
    config["job"]["dump_folder"] = str(folder)
    config["debug"]["seed"] = seed
    if lr is not None:
        config["optimizer"]["lr"] = lr
    (folder / "run_config.json").write_text(json.dumps(config))
    rows = [{"step": s, "loss": 5.0, "plain_ce": 4.0} for s in (1000, 2000)]
    own = np.random.default_rng([seed, zlib.crc32(name.encode())])  # this run's own noise
    noise = own.normal(0, 0.01)
    rows += [
        {"step": 1000, "validation_plain_ce": 4.0 - score + noise},
        {"step": 2000, "validation_plain_ce": 3.5 - score + noise},
    ]
    (folder / METRICS_LOG).write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = np.random.default_rng(seed)
    items, results = {}, {}
    for task in (*TASKS, *PROBE_TASKS, *BLANK_TASKS):
        base = 0.5 if task == "winogrande_debiased" else 0.3
        gain = 0.0 if task in BLANK_TASKS else score  # the blank twins cannot read the word
        gain = (gains or {}).get(task, gain)
        difficulty = rng.random(ITEMS)  # the same per seed in every arm: paired items
        correct = (difficulty + own.normal(0, 0.05, ITEMS) < base + gain).astype(float)
        items[task] = [  # the gold's log-likelihood: higher when the item is answered right
            {
                "doc_id": i,
                "correct": c,
                "acc": c,
                "acc_norm": None,
                "gold_loglik": -8.0 + 4.0 * c,
                "gold_bytes": 8,
            }
            for i, c in enumerate(correct)
        ]
        results[task] = {"acc,none": float(correct.mean())}
        if task in PROBE_TASKS or task in BLANK_TASKS:
            results[task]["bits_per_byte,none"] = 2.0 - gain
    results["embedding_probe"] = {  # the probe's letter macro-F1 (per run; no items)
        f"{m}_letters,none": 0.3 + score + own.normal(0, 0.005) for m in ("input", "output")
    }
    if eval_kind == "curve":
        (folder / "eval_curve.json").write_text(json.dumps({"1000": {}, "2000": results}))
    elif eval_kind == "results":
        out = folder / "hf" / "step-2000"
        out.mkdir(parents=True)
        (out / "eval_results.json").write_text(json.dumps({"results": results}))
        write_items(str(out), items)
    return folder


# -- scripts --------------------------------------------------------------------------------------


def load_script(name: str):
    """scripts/<name>.py as a module (the scripts are files, not a package)."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOLD = """
import sys, time
from prefix_titan.runs.lock import RunLock
lock = RunLock(sys.argv[1], command=sys.argv[2]).acquire()
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""


def holding_lock(folder, command="train ce", seconds=600):
    """A process that takes `folder`'s lock and holds it; returns once it holds it. The tests
    kill it when done; it holds the lock for minutes, not one (a training started beside it on a
    loaded machine can take longer than a minute to reach the lock, and then found it free)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), command, str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = holder.stdout.readline()
    assert line == "held\n", (line, holder.stderr.read() if holder.poll() is not None else "")
    return holder


def fake_export(folder) -> None:
    """A model folder that eval takes for an export until it loads the model: config.json, a
    readable model.safetensors of one tensor and a tokenizer.json placeholder (for the tests that
    fake lm-eval's evaluation)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    save_file({"w": torch.zeros(1)}, str(folder / "model.safetensors"))
