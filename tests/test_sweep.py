"""The sweep launcher's plans (`python -m prefix_titan.sweep launch --dry-run`), its refusals and
its queue; the dry runs run in this process (the command itself is run by the last tests)."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from unittest import mock

import pytest
from helpers import ROOT, project

from prefix_titan.sweep import launch


def dry_run(*args, gpus=None, root=None, checks=False):
    """(exit status, stdout lines, stderr) of `launch --dry-run ARGS` in `root` (default: the
    package's project folder, helpers.project) on a node that shows `gpus` (CUDA_VISIBLE_DEVICES;
    "": none, None: as this machine); the checks a launch would make (preflight, a process of its
    own) only with `checks`, else none is found."""
    root = root or project()
    out, err = io.StringIO(), io.StringIO()
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    preflight = (
        launch.preflight
        if checks
        else lambda root, runs, device=None, sweep=None, world=None, dry=False: []
    )
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            mock.patch.object(launch, "preflight", preflight),
        ):
            try:
                code = launch.main(["--dry-run", "--root", str(root), *args])
            except SystemExit as e:
                code = e.code
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    return code, out.getvalue().splitlines(), err.getvalue()


def test_a_smoke_run_over_the_nodes_ranks_trains_on_the_cpu_where_no_gpu_is_visible(
    capsys, monkeypatch
):
    """--gpus-per-run node without a GPU: the smoke scale's ranks run through prefix_titan's
    launcher, which sets torchtitan up for the CPU (torchtitan's own failed every run in its CUDA
    set-up); with GPUs, torchtitan's; another scale is refused before any run starts."""
    args = ["--scale", "smoke", "--arms", "ce", "--seeds", "1"]
    args += ["--gpus-per-run", "node", "--nproc-per-node", "2"]
    rc, lines, err = dry_run(*args, gpus="")
    assert rc == 0 and "plan for 2 CPU ranks (no GPU is visible) per node" in err, err
    assert "--nproc_per_node=2" in lines[0] and " -m prefix_titan.train " in lines[0], lines
    rc, lines, err = dry_run(*args, gpus="0,1")
    assert rc == 0 and " -m torchtitan.train " in lines[0] and "plan for 2 GPUs per node" in err
    rc, lines, err = dry_run("--scale", "pilot", "--gpus-per-run", "node", gpus="")
    assert rc == 0 and "plan for 8 GPUs per node" in err  # a plan made on a laptop
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(SystemExit):
        launch.main(["--scale", "pilot", "--gpus-per-run", "node", "--root", str(project())])
    assert "no GPU is visible (CUDA_VISIBLE_DEVICES, nvidia-smi): the pilot scale needs GPUs" in (
        capsys.readouterr().err
    )


def test_dry_run_lists_every_arm_baselines_first():
    rc, lines, _ = dry_run()
    assert rc == 0 and len(lines) == 14
    assert "train_configs/ce.toml --debug.seed 1234" in lines[0]
    assert "train_configs/label_smoothing.toml --debug.seed 1234" in lines[1]
    assert all(
        line.startswith(
            "torchrun --nproc_per_node=8 --nnodes=1 --local-ranks-filter=0 --standalone -m "
            "torchtitan.train"
        )
        for line in lines
    )
    assert sum("prefix_norm_tau" in line for line in lines) == 6
    # seed by seed: a sweep cut short holds whole seeds, every arm paired on them
    rc, lines, _ = dry_run("--arms", "ce", "label_smoothing", "--seeds", "1", "2")
    assert [
        (line.split("train_configs/")[1].split(".toml")[0], line.split("--debug.seed ")[1][0])
        for line in lines
    ] == [("ce", "1"), ("label_smoothing", "1"), ("ce", "2"), ("label_smoothing", "2")]


def test_multi_node_keeps_the_global_batch():
    rc, lines, _ = dry_run(
        "--nnodes",
        "4",
        "--rdzv-endpoint",
        "head:29500",
        "--arms",
        "ce",
        "--",
        "--metrics.log_freq",
        "1",
    )
    assert rc == 0 and len(lines) == 1
    assert (
        "--nnodes=4 --local-ranks-filter=0 --rdzv_backend=c10d --rdzv_endpoint=head:29500"
        in (lines[0])
    )
    assert "--node_rank" not in lines[0]  # (the c10d rendezvous numbers the nodes itself)
    # 32 GPUs x 16 > 256: local batch 8 keeps 256 x 2048 tokens per step, and 20 validation
    # steps of 10 keep its 6,400 validation sequences.
    assert lines[0].endswith(
        "--training.local_batch_size 8 --validation.steps 20 --validation.local_batch_size 10 "
        "--metrics.log_freq 1"
    )
    assert "--rdzv_id=prefix_titan_500M_ce_seed1234" in lines[0]


def test_the_batches_and_the_validation_set_are_counted_over_the_data_parallel_ranks():
    """Tensor (context, pipeline) parallel GPUs share one data-parallel rank's batch: on 8 GPUs
    at tensor parallel 2, 4 ranks read the batches, so 100 validation steps of 16 keep the 6,400
    sequences (50 would validate on 3,200); on 4 nodes, 16 ranks take the local batch of 16 as
    it is (lowering it to 8 would only add accumulation steps). The smoke scale's step (no
    global batch) stays its 16 sequences on 2 ranks of one data-parallel rank."""
    tp = ("--", "--parallelism.tensor_parallel_degree", "2")
    rc, lines, err = dry_run("--arms", "ce", *tp)
    assert rc == 0 and len(lines) == 1, err
    assert lines[0].endswith("--validation.steps 100 --parallelism.tensor_parallel_degree 2"), (
        lines[0]
    )
    # the dry run states the arithmetic: ranks, local batch, accumulation, tokens, validation
    assert (
        "[sweep] each run: 4 data-parallel ranks of 8 GPUs x local batch 16 x 4 accumulation "
        "steps = 256 sequences of 2048 tokens = 524,288 tokens a step; validation: 100 steps x "
        "16 x 4 = 6,400 sequences\n"
    ) in err
    rc, lines, err = dry_run("--arms", "ce", "--nnodes", "4", "--rdzv-endpoint", "h:1", *tp)
    assert rc == 0 and len(lines) == 1, err
    assert lines[0].endswith("--validation.steps 25 --parallelism.tensor_parallel_degree 2")
    assert "16 data-parallel ranks of 32 GPUs x local batch 16 x 1 accumulation step = 256" in err
    rc, lines, err = dry_run(
        *("--scale", "smoke", "--arms", "ce", "--gpus-per-run", "node", "--nproc-per-node", "2"),
        *(*tp, "--parallelism.disable_loss_parallel"),
        gpus="",
    )
    assert rc == 0 and len(lines) == 1, err
    assert "--training.local_batch_size" not in lines[0] and "--validation." not in lines[0]
    # a refusal names the GPUs, and the GPU counts that can, as the data-parallel ranks make them
    rc, _, err = dry_run("--arms", "ce", "--nproc-per-node", "6", "--gpus-per-run", "node", *tp)
    assert (
        rc == 2
        and (
            "error: 6 GPUs per run (3 data-parallel ranks of 2 GPUs each) cannot split the global "
            "batch of 256 sequences (training.global_batch_size) evenly; GPU counts that can: 2, 4, 8,"
        )
        in err
    ), err
    rc, _, err = dry_run(
        *("--arms", "ce", "--nproc-per-node", "6", "--gpus-per-run", "node"),
        *("--", "--parallelism.tensor_parallel_degree", "4"),
    )
    assert (
        rc == 2
        and (
            "error: 6 GPUs per run cannot be split into data-parallel ranks of 4 GPUs "
            "(parallelism.tensor_parallel_degree 4): give a GPU count that 4 divides"
        )
        in err
    ), err
    assert launch.data_parallel({}, ["--parallelism.context_parallel_degree=4"], 32) == 8
    assert launch.data_parallel({"parallelism": {"pipeline_parallel_degree": 2}}, [], 8) == 4
    assert launch.data_parallel({}, ["--parallelism.tensor_parallel_degree", "3"], 8) == 8


@pytest.mark.parametrize(("nodes", "scale"), [(1, []), (4, []), (1, ["--scale", "pilot"])])
def test_the_slurm_script_launches_what_the_launcher_takes(tmp_path, nodes, scale):
    """scripts/sweep.sbatch under stand-ins for Slurm's commands: on one node (its default) it
    passes no rendezvous, which the launcher refused with --nnodes 1; on several, the head node's
    address with a port of the job's; srun gets the task's CPUs and ends every node on a
    failure. The launch it would run is then planned by the launcher itself, the pilot's too
    (its runs side by side: a --nproc-per-node of the script's was refused there)."""
    import shlex

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\nprintf 'gpu-a01\\ngpu-a02\\n'\n")
    (bin_dir / "srun").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/srun.txt\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_SUBMIT_DIR": str(project()),
        "SLURM_NNODES": str(nodes),
        "SLURM_JOB_NODELIST": "gpu-a[01-02]",
        "SLURM_JOB_ID": "123456",
        "SLURM_CPUS_PER_TASK": "64",
        "SWEEP_ARGS": " ".join([*scale, "--seeds", "1", "2"]),
    }
    env.pop("RDZV_PORT", None)
    script = ROOT / "scripts" / "sweep.sbatch"
    subprocess.run(["bash", str(script)], env=env, check=True, cwd=tmp_path)
    words = (tmp_path / "srun.txt").read_text().splitlines()
    assert words[:4] == ["--kill-on-bad-exit=1", "--cpus-per-task=64", "bash", "-c"]
    command = shlex.split(words[4])
    assert command[:4] == ["python", "-m", "prefix_titan.sweep", "launch"]
    if nodes == 1:
        assert "--nnodes" not in command and "--rdzv-endpoint" not in command
    else:
        assert command[command.index("--rdzv-endpoint") + 1] == "gpu-a01:23456"
        subprocess.run(["bash", str(script)], env={**env, "RDZV_PORT": "31000"}, check=True)
        again = shlex.split((tmp_path / "srun.txt").read_text().splitlines()[4])
        assert again[again.index("--rdzv-endpoint") + 1] == "gpu-a01:31000"
    rc, lines, err = dry_run(*command[4:], "--arms", "ce")
    assert rc == 0 and len(lines) == 2, err
    assert ("--rdzv_endpoint=gpu-a01:23456" in lines[0]) == (nodes > 1)
    assert "slurm-%x-%j.out" in script.read_text() and "outputs/" not in script.read_text()


def test_the_local_batch_is_lowered_to_one_that_keeps_the_global_batch():
    """torchtitan needs global = local x world x accumulation steps: a local batch that does not
    divide the global batch per GPU is lowered to the largest that does, never raised."""
    config = {"training": {"local_batch_size": 32, "global_batch_size": 384}}
    assert launch.batch_override(config, 2) == []  # 384 = 32 x 2 x 6
    assert launch.batch_override(config, 8) == ["--training.local_batch_size", "24"]  # 24 x 8 x 2
    assert launch.batch_override(config, 16) == ["--training.local_batch_size", "24"]  # x 1
    with pytest.raises(SystemExit, match="5 GPUs per run cannot split the global batch of 384"):
        launch.batch_override(config, 5)
    # no global batch (the smoke scale's): the local batch is the step's, split over the ranks
    # (2 ranks trained 32 sequences per step where 1 trained 16)
    assert launch.batch_override({"training": {"local_batch_size": 16}}, 1) == []
    assert launch.batch_override({"training": {"local_batch_size": 16}}, 2) == [
        *("--training.local_batch_size", "8")
    ]
    with pytest.raises(SystemExit, match="3 ranks per run cannot split the step's 4 sequences"):
        launch.batch_override({"training": {"local_batch_size": 4}}, 3)


def test_the_validation_set_keeps_its_sequences_on_any_number_of_gpus():
    """torchtitan reads validation.steps batches per rank: the steps (and, where they cannot, the
    local batch) follow the GPUs per run so that every placement validates on the same set."""
    from prefix_titan.sweep.configs import SCALES, load_config

    config = {"validation": {"enable": True, "local_batch_size": 16, "steps": 50}}
    assert launch.validation_override(config, 8, 6400) == []  # 50 x 16 x 8
    assert launch.validation_override(config, 4, 6400) == ["--validation.steps", "100"]
    assert launch.validation_override(config, 1, 6400) == ["--validation.steps", "400"]
    assert launch.validation_override(config, 64, 6400) == [
        *("--validation.steps", "10", "--validation.local_batch_size", "10"),
    ]
    with pytest.raises(SystemExit, match="3 GPUs per run cannot split the validation set of 6400"):
        launch.validation_override(config, 3, 6400)
    assert launch.validation_override({"validation": {"enable": False}}, 3, 6400) == []
    for name, scale in SCALES.items():  # each scale's configs hold its set at its own placement
        c = load_config(ROOT, name, "ce")
        v, world = c["validation"], scale.gpus_per_run or 8
        assert v["steps"] * v["local_batch_size"] * world == scale.validation_sequences, name
        assert launch.validation_override(c, world, scale.validation_sequences) == []


def test_bad_launch_settings_are_refused():
    rc, _, err = dry_run("--nnodes", "2")
    assert rc == 2 and "--rdzv-endpoint" in err
    rc, _, err = dry_run("--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", "h:1")
    assert rc == 2 and "--node-rank: the c10d rendezvous numbers the nodes itself" in err
    rc, _, err = dry_run("--scale", "smoke", "--gpus", "0", "--gpus-per-run", "2", gpus="")
    assert rc == 0 and "--gpus-per-run 2 places runs on GPUs, and there are none here" in err
    rc, _, err = dry_run("--scale", "pilot", "--nnodes", "2", "--rdzv-endpoint", "h:1")
    err = " ".join(err.split())
    assert rc == 2 and "--nnodes 2: runs side by side (--gpus-per-run 1, the pilot scale's" in err
    assert "launch on each its own seeds (one single-node job per seed under Slurm" in err
    rc, _, err = dry_run("--nnodes", "0")
    assert rc == 2 and "--nnodes must be >= 1 (the nodes of one launch); got 0" in err
    rc, _, err = dry_run("--scale", "pilot", "--nproc-per-node", "3")  # (ignored, it was)
    assert rc == 2 and "--gpus-per-run 1 gives each run 1 GPU(s): leave one out" in err, err
    rc, _, err = dry_run("--rdzv-endpoint", "host:29500")
    assert rc == 2 and "--rdzv-endpoint places a run over several nodes: give --nnodes N" in err
    rc, _, err = dry_run("--arms", "prefix_tau3.0")
    assert rc == 2 and "--arms prefix_tau3.0: no such arm (prefix_tau3.0: did you mean " in err
    assert "; the arms are ce, label_smoothing" in err


def test_configs_are_written_whole_and_never_through_a_link(tmp_path, capsys):
    """A config is written to a temporary file and renamed (a cut write could still parse as
    TOML, with other numbers); one that is a symbolic link is refused, its target untouched."""
    from prefix_titan.sweep.__main__ import configs_main

    shutil.copytree(project() / "train_configs", tmp_path / "train_configs")
    config = tmp_path / "train_configs" / "smoke" / "ce.toml"
    config.unlink()
    (tmp_path / "elsewhere.toml").write_text("keep")
    os.symlink(tmp_path / "elsewhere.toml", config)
    with pytest.raises(SystemExit) as e:
        configs_main(["--root", str(tmp_path)])
    assert e.value.code == 2 and "ce.toml is a symbolic link" in capsys.readouterr().err
    assert (tmp_path / "elsewhere.toml").read_text() == "keep"
    config.unlink()
    assert configs_main(["--root", str(tmp_path)]) == 0
    assert config.read_text() == (ROOT / "train_configs" / "smoke" / "ce.toml").read_text()
    assert not list((tmp_path / "train_configs").rglob("*.tmp"))


def test_a_project_adds_arms_in_its_sweep_arms_file(tmp_path, capsys):
    """sweep_arms.toml in the project folder: configs writes each arm's config at every scale,
    launch runs it like a built-in arm; a table that sets more than the objective is refused."""
    from prefix_titan.sweep.__main__ import configs_main

    shutil.copytree(project() / "train_configs", tmp_path / "train_configs")
    arms = tmp_path / "sweep_arms.toml"
    arms.write_text(
        '[[arm]]\nname = "prefix"\ntau = 0.3\nposition_gamma = 0.99\n\n'
        '[[arm]]\nname = "prefix_titan.objectives.families:ce_targets"\n'
    )
    assert configs_main(["--check", "--root", str(tmp_path)]) == 1  # their configs not written yet
    assert configs_main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "wrote 48 configs for 16 arms (2 from sweep_arms.toml: prefix_tau0.3_gamma0.99, " in out
    assert configs_main(["--check", "--root", str(tmp_path)]) == 0
    config = tmp_path / "train_configs" / "smoke" / "prefix_tau0.3_gamma0.99.toml"
    assert "\nposition_gamma = 0.99\n" in config.read_text()
    rc, lines, err = dry_run("--scale", "smoke", "--seeds", "3", gpus="", root=tmp_path)
    assert rc == 0 and len(lines) == 16, err  # the 14 built-in arms, then the file's two
    assert "train_configs/smoke/prefix_tau0.3_gamma0.99.toml --debug.seed 3" in lines[14]
    assert "sweep_smoke/prefix_titan.objectives.families-ce_targets/seed3" in lines[15]
    rc, lines, err = dry_run(  # an import path's arm by its file-name form
        "--scale",
        "smoke",
        "--arms",
        "prefix_titan.objectives.families-ce_targets",
        gpus="",
        root=tmp_path,
    )
    assert rc == 0 and len(lines) == 1 and "families-ce_targets.toml" in lines[0], err
    # an arm dropped from the file: its configs are made by no arm, listed, then removed; a copy
    # of a generated config under a name of the user's is the user's
    mine = tmp_path / "train_configs" / "smoke" / "my_tweak.toml"
    shutil.copy(tmp_path / "train_configs" / "smoke" / "prefix_tau0.5.toml", mine)
    arms.write_text('[[arm]]\nname = "prefix"\ntau = 0.3\nposition_gamma = 0.99\n')
    assert configs_main(["--check", "--root", str(tmp_path)]) == 1
    assert "made by no arm (run python -m prefix_titan.sweep configs to remove them): " in (
        capsys.readouterr().out
    )
    assert configs_main(["--root", str(tmp_path)]) == 0
    assert "removed 3 that no arm makes" in capsys.readouterr().out
    assert not list(tmp_path.glob("train_configs/**/*families-ce_targets.toml"))
    assert (tmp_path / "train_configs" / "embedded_default.toml").is_file()  # not generated
    assert mine.is_file()
    arms.write_text("")  # an empty file: no arms of the project's own
    assert configs_main(["--root", str(tmp_path)]) == 0
    for table, says in [
        ('[[arm]]\nname = "prefix"\nkernel = "triton"\n', "arm 1 sets kernel, a setting every"),
        (
            '[[arm]]\nname = "prefix"\ntua = 0.3\n',
            "sets tua, which is no setting (did you mean tau?)",
        ),
        ('[[arm]]\nname = "prefx"\n', "objective.name must be one of ce, label_smoothing"),
        ('[[arm]]\nname = "no_lab.t:f"\n', "arm 1 (no_lab.t:f): objective.name 'no_lab.t:f': "),
        (
            '[[arm]]\nname = "prefix_titan.objectives.families:ce_targets"\noptions = "n=1"\n',
            "objective.options sets n, which 'prefix_titan.objectives.families:ce_targets' does "
            "not declare (its settings, keyword arguments with their defaults: none)",
        ),
        ('[arm]\nname = "prefix"\n', "[[arm]], not [arm]); it holds arm"),
        ('[[arm]]\nname = "ce"\nlabel_smoothing = 0.1\n', "sets label_smoothing, which is no "),
        ("arm = [1]\n", "write one [[arm]] table per arm"),
        ("[[arm]]\ntau = 0.3\n", "arm 1 has no name"),
        ('[[arm]]\nname = "prefix"\ntau = -1.0\n', "arm 1 (prefix): objective.tau must be"),
        ('name = "prefix"\n', "write one [[arm]] table per arm"),
        (
            '[[arm]]\nname = "ce"\n',
            "two arms 'ce': the same objective is listed twice (it is a built-in arm: leave it "
            "out of sweep_arms.toml)",
        ),
        (  # one objective twice (a setting at its default is no part of it)
            '[[arm]]\nname = "prefix_titan.objectives.families:ce_targets"\n\n[[arm]]\n'
            'name = "prefix_titan.objectives.families:ce_targets"\ntau = 0.5\n',
            "two arms 'prefix_titan.objectives.families:ce_targets': the same objective is "
            "listed twice\n",
        ),
    ]:
        arms.write_text(table)
        rc, _, err = dry_run("--scale", "smoke", gpus="", root=tmp_path)
        assert rc == 2 and f"{arms}: " * ("two arms" not in says) in err and says in err, err
        with pytest.raises(SystemExit) as e:  # configs too: a message, not a traceback
            configs_main(["--root", str(tmp_path)])
        assert e.value.code == 2 and says in capsys.readouterr().err


def test_every_run_has_its_seed_and_its_own_folder():
    rc, lines, _ = dry_run("--arms", "ce", "prefix_tau0.5")
    assert rc == 0 and len(lines) == 2  # the config's own seed
    assert lines[0].endswith(
        "train_configs/ce.toml --debug.seed 1234 --job.dump_folder ./outputs/sweep_500M/ce/seed1234"
    )


def test_paired_seeds_run_every_arm_once_per_seed():
    seeds = ["1234", "1235", "1236"]
    rc, lines, _ = dry_run("--arms", "ce", "label_smoothing", "prefix_tau0.5", "--seeds", *seeds)
    assert rc == 0 and len(lines) == 9
    runs = set()
    for line in lines:
        args = line.split()
        arm = args[args.index("--job.config_file") + 1].split("/")[-1][: -len(".toml")]
        seed = args[args.index("--debug.seed") + 1]
        assert args[args.index("--job.dump_folder") + 1] == f"./outputs/sweep_500M/{arm}/seed{seed}"
        runs.add((arm, seed))
    assert runs == {(a, s) for a in ("ce", "label_smoothing", "prefix_tau0.5") for s in seeds}


def test_pilot_runs_side_by_side_one_gpu_each():
    rc, lines, _ = dry_run("--scale", "pilot", "--arms", "ce", "--seeds", "1", "2", "3", gpus="4,5")
    assert rc == 0 and len(lines) == 3
    assert [line.split()[0] for line in lines] == [
        "CUDA_VISIBLE_DEVICES=4",
        "CUDA_VISIBLE_DEVICES=5",
        "CUDA_VISIBLE_DEVICES=4",  # queued behind the first
    ]
    assert all(
        " torchrun --standalone --nproc_per_node=1 -m torchtitan.train "
        "--job.config_file train_configs/pilot/ce.toml" in line
        for line in lines
    )
    rc, lines, err = dry_run(
        "--scale", "pilot", "--arms", "ce", "--gpus-per-run", "2", gpus="0,1,2"
    )
    assert rc == 0 and lines[0].startswith("CUDA_VISIBLE_DEVICES=0,1 torchrun --standalone")
    assert "--nproc_per_node=2 --local-ranks-filter=0" in lines[0]
    assert "1 of 3 GPUs stay idle" in err


def finish(run, config: dict):
    """A run folder as a finished run leaves it: its final step complete, its checksums recorded,
    and its final validation row where the run validates."""
    import json

    from prefix_titan.runs.checkpoints import DCP_METADATA, record_step
    from prefix_titan.runs.folder import METRICS_LOG

    steps = config["training"]["steps"]
    step = run / config["checkpoint"]["folder"] / f"step-{steps}"
    step.mkdir(parents=True)
    (step / DCP_METADATA).write_bytes(b"")
    record_step(str(step), 0)
    if (config.get("validation") or {}).get("enable"):
        row = {"step": steps, "validation_plain_ce": 3.0}
        (run / METRICS_LOG).write_text(json.dumps(row) + "\n")
    return step


def test_a_run_is_finished_with_its_final_step_sealed_and_validated(tmp_path):
    """A run's final step is finished when it is saved, its checksums recorded and (where the run
    validates) its validation row written: a folder short of any of them is not (its launch
    resumes it)."""
    import json

    from prefix_titan.runs.checkpoints import DCP_METADATA, record_step
    from prefix_titan.runs.folder import METRICS_LOG
    from prefix_titan.sweep.__main__ import configs_main
    from prefix_titan.sweep.configs import SCALES, load_config

    (tmp_path / "train_configs").mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        assert configs_main(["--root", str(tmp_path)]) == 0
    config = load_config(tmp_path, "pilot", "ce")
    assert config["validation"]["enable"]
    run = tmp_path / launch.run_folder(config, 1, SCALES["pilot"].sweep)
    steps = config["training"]["steps"]

    def done(*extra) -> bool:
        return launch.finished(tmp_path, config, 1, list(extra), SCALES["pilot"].sweep)

    step = run / config["checkpoint"]["folder"] / f"step-{steps}"
    step.mkdir(parents=True)
    assert not done()
    (step / DCP_METADATA).write_bytes(b"")
    assert not done()  # complete, its checksums not recorded
    record_step(str(step), 0)
    assert not done()  # sealed, not validated
    assert done("--validation.no-enable") and not done("--validation.enable")
    log = run / METRICS_LOG
    log.write_text(json.dumps({"step": steps - 1, "validation_plain_ce": 3.0}) + "\n")
    assert not done()
    log.write_text(log.read_text() + json.dumps({"step": steps, "validation_plain_ce": 3.0}))
    assert not done()  # a row cut short by a stop is not a row
    log.write_text(log.read_text() + "\n")
    assert done()
    assert not done("--training.steps", str(steps + 2))  # another final step


def test_the_dry_run_lists_a_finished_run_as_skipped_and_places_only_the_others(tmp_path):
    """What a launch would skip (its final checkpoint is complete) is a comment line in the dry
    run, not a command, and takes no GPU in the placement."""
    from prefix_titan.sweep.__main__ import configs_main
    from prefix_titan.sweep.configs import SCALES, load_config

    (tmp_path / "train_configs").mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        assert configs_main(["--root", str(tmp_path)]) == 0
    for scale in ("pilot", "500M"):
        config = load_config(tmp_path, scale, "ce")
        finish(tmp_path / launch.run_folder(config, 1, SCALES[scale].sweep), config)
    args = ("--arms", "ce", "--seeds", "1", "2", "3")
    rc, lines, _ = dry_run("--scale", "pilot", *args, gpus="4,5", root=tmp_path)
    assert rc == 0 and lines[0] == f"# ce seed 1: {launch.SKIPPED}", lines
    assert [line.split()[0] for line in lines[1:]] == [
        "CUDA_VISIBLE_DEVICES=4",
        "CUDA_VISIBLE_DEVICES=5",
    ]
    assert "--debug.seed 2" in lines[1] and "--debug.seed 3" in lines[2]
    rc, lines, _ = dry_run(*args, gpus="", root=tmp_path)  # (the 500M, planned for 8 GPUs)
    assert rc == 0 and lines[0] == f"# ce seed 1: {launch.SKIPPED}" and len(lines) == 3, lines
    # a plan averaging more checkpoints than a run keeps: refused for runs that would train, not
    # for a launch whose runs are all finished (it trains nothing)
    from prefix_titan.sweep.analysis import PLAN

    plan = tmp_path / "plan.toml"
    plan.write_text(open(PLAN).read().replace("checkpoints = 3", "checkpoints = 7"))
    for seeds, refused in ((["1"], False), (["1", "2"], True)):
        more = ["--arms", "ce", "--seeds", *seeds, "--plan", str(plan)]
        rc, _, err = dry_run("--scale", "pilot", *more, gpus="4", root=tmp_path)
        assert (rc == 2) is refused and ("checkpoints = 7 averages" in err) is refused, err
    assert all(line.startswith("torchrun --nproc_per_node=8") for line in lines[1:])


def test_the_500m_scale_keeps_one_run_over_the_node(monkeypatch, capsys):
    """Planned anywhere (a dry run: the visible GPUs, else 8 a node); launched, a rank per GPU
    the node shows by default (it planned 8 on a 4-GPU node and the launch then refused it) and
    never more ranks than that (torchrun started 8 ranks on 2 GPUs)."""
    rc, lines, err = dry_run("--arms", "ce", "--seeds", "7", gpus="")
    assert rc == 0 and lines[0].startswith("torchrun --nproc_per_node=8 --nnodes=1")
    rc, lines, err = dry_run("--arms", "ce", "--seeds", "7", gpus="0,1,2,3")
    assert rc == 0 and lines[0].startswith("torchrun --nproc_per_node=4 --nnodes=1")
    assert "plan for 4 GPUs per node, one run at a time" in err
    assert "4 data-parallel ranks" in err and "= 524,288 tokens a step" in err, err
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")

    class Checked(Exception):
        pass

    def preflight(root, runs, device=None, sweep=None, world=None, dry=False):
        raise Checked(world)

    monkeypatch.setattr(launch, "preflight", preflight)
    with pytest.raises(Checked) as e:  # 2 by default: checked, not refused
        launch.main(["--root", str(project()), "--arms", "ce"])
    assert e.value.args == (2,)
    monkeypatch.setattr(launch, "preflight", lambda *a, **k: pytest.fail("checked, not refused"))
    with pytest.raises(SystemExit):
        launch.main(["--root", str(project()), "--arms", "ce", "--nproc-per-node", "4"])
    err = capsys.readouterr().err
    assert "this node shows 2 GPU(s) (0,1; CUDA_VISIBLE_DEVICES, nvidia-smi): give at most " in err


def test_smoke_runs_on_a_cpu_through_our_launcher():
    rc, lines, _ = dry_run("--scale", "smoke", "--arms", "ce", "--seeds", "1", "2", gpus="")
    assert rc == 0 and len(lines) == 2
    assert lines[0].startswith(
        "torchrun --standalone --nproc_per_node=1 -m prefix_titan.train "
        "--job.config_file train_configs/smoke/ce.toml --debug.seed 1 "
        "--job.dump_folder ./outputs/sweep_smoke/ce/seed1"
    )


@pytest.mark.parametrize(
    "args,gpus,message",
    [
        (["--seeds", "1", "2", "1"], None, "--seeds must be distinct: 1 repeated"),
        (["--scale", "pilot", "--gpus-per-run", "3"], "0,1", "--gpus-per-run 3 needs 3 GPUs, but"),
        (
            ["--scale", "pilot", "--gpus-per-run", "3"],
            "0,1,2",
            "3 GPUs per run cannot split the global batch of 256 sequences "
            "(training.global_batch_size) evenly; GPU counts that can: 1, 2, 4, 8, 16, 32, 64, 128, 256",
        ),
        (["--gpus", "6"], "", "6 GPUs per run cannot split the global batch of 256"),
        (["--scale", "pilot", "--gpus", "0"], "", "--gpus 0: the pilot scale needs GPUs"),
        (["--gpus", "0"], "", "--gpus 0: the 500M scale runs over every GPU of the node"),
        (["--gpus", "-1"], "", "--gpus must be >= 0; got -1"),
        (["--gpus-per-run", "two"], "0", "--gpus-per-run must be 'node' or a whole number >= 1"),
        (["--scale", "large"], None, "invalid choice: 'large'"),
        # overrides after -- apply to every arm: none may change an arm's objective, seed or folder
        (["--", "--objective.name", "label_smoothing"], None, "--objective.name after --"),
        (["--", "--objective.tau=2"], None, "--objective.tau after --: the launcher sets these"),
        (["--", "--objective.position-gamma", "0.9"], None, "--objective.position-gamma after"),
        (["--", "--debug.seed", "3"], None, "--debug.seed after --"),
        (["--", "--job.dump_folder", "x"], None, "--job.dump_folder after --"),
        (["--", "--objective.no-normalize"], None, "--objective.no-normalize after --"),
    ],
)
def test_bad_sweep_settings_are_refused(args, gpus, message):
    rc, _, err = dry_run(*args, gpus=gpus)
    assert rc == 2 and message in err, err


def test_a_sweep_folder_that_is_a_file_or_one_runs_folder_is_refused(tmp_path):
    (tmp_path / "a_file").write_text("")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run_config.json").write_text("{}")
    rc, _, err = dry_run("--scale", "smoke", "--sweep-dir", str(tmp_path / "a_file"), gpus="")
    assert rc == 2 and "is a file: a sweep is a folder of run folders" in err, err
    rc, _, err = dry_run("--scale", "smoke", "--sweep-dir", str(tmp_path / "run"), gpus="")
    assert rc == 2 and "is one run's folder (it holds run_config.json)" in err, err
    assert not (tmp_path / "run" / "analysis_plan.toml").exists()


def test_a_config_edited_by_hand_is_refused_by_the_launch(tmp_path):
    """A generated config changed by hand (tau = 0.7 in prefix_tau0.5's) would train another arm
    into the arm's folder: the launch refuses it, naming the file and how to change a sweep."""
    shutil.copytree(project() / "train_configs", tmp_path / "train_configs")
    config = tmp_path / "train_configs" / "smoke" / "prefix_tau0.5.toml"
    config.write_text(config.read_text().replace("\ntau = 0.5\n", "\ntau = 0.7\n"))
    args = ("--scale", "smoke", "--arms", "prefix_tau0.5", "ce")
    rc, _, err = dry_run(*args, gpus="", root=tmp_path)
    assert rc == 2, err
    assert "train_configs/smoke/prefix_tau0.5.toml differs from what `python -m prefix_titan" in err
    assert "regenerate with `python -m prefix_titan.sweep configs`" in err
    shutil.copy(ROOT / "train_configs" / "smoke" / "prefix_tau0.5.toml", config)
    rc, lines, err = dry_run(*args, gpus="", root=tmp_path)
    assert rc == 0 and len(lines) == 2, err


@pytest.mark.slow  # two processes that import torchtitan
def test_a_dry_run_says_what_a_launch_from_here_would_refuse(tmp_path):
    """A plan made where the data and tokenizer are not prepared yet ends with the launch's own
    refusals (exit status 2): every problem once, with the runs it stops; a shard folder that
    prepare has not finished is one. Where everything is in place it is only the plan."""
    shutil.copytree(project() / "train_configs", tmp_path / "train_configs")
    (tmp_path / "data" / "fineweb_edu_ascii_llama3").mkdir(parents=True)  # begun, not finished
    rc, lines, err = dry_run(
        "--scale",
        "pilot",
        "--arms",
        "ce",
        "label_smoothing",
        "--seeds",
        "1",
        gpus="",
        root=tmp_path,
        checks=True,
    )
    assert rc == 2 and len(lines) == 2, err  # the plan is printed first, whole
    refusals = err.split("a launch from here would be refused before any run started:\n")[1]
    problems = refusals.strip().split("\n")
    assert len(problems) == 4, err  # the tokenizer, both data folders, then where from
    assert f"the relative paths above are read from the working directory, {tmp_path}" in err
    assert all(p.strip().startswith("ce seed 1, label_smoothing seed 1: ") for p in problems), err
    assert "model.hf_assets_path './assets/hf/Llama-3.1-8B' holds no tokenizer.json" in problems[0]
    assert "download_tokenizer.py" in problems[0]
    assert "training.dataset_path: './data/fineweb_edu_ascii_llama3' has no manifest.json" in err
    rc, lines, err = dry_run(
        "--scale", "smoke", "--arms", "ce", "--seeds", "1", gpus="", root=tmp_path, checks=True
    )
    assert rc == 0 and len(lines) == 1 and "refused" not in err, err  # embedded data: all there


def test_a_dry_run_plans_without_a_gpu():
    """Sweeps are planned where no GPU is (a login node): 8 GPUs unless --gpus says otherwise."""
    seeds = ["1234", "1235", "1236"]
    rc, lines, err = dry_run("--scale", "pilot", "--seeds", *seeds, gpus="")
    assert rc == 0 and len(lines) == 14 * 3, err
    assert "plan for 8 GPUs (no GPU is visible here; --gpus N changes it)" in err
    assert [line.split()[0] for line in lines[:9]] == [
        f"CUDA_VISIBLE_DEVICES={i % 8}" for i in range(9)
    ]
    # its cost from the pilot's configs and one H100's measured throughput (docs/experiment.md:
    # 1.6 GPU-hours a run, 66 in all, six waves of eight: 9.4 h)
    said = " ".join(err.split())
    assert "training cost, estimated: 42 runs of 3.2B tokens (1.57 GPU-hours each, at the " in said
    assert "= 65.8 GPU-hours; 6 waves of up to 8 runs side by side, 1 GPU each: about 9.4 h" in said
    rc, lines, err = dry_run("--scale", "pilot", "--arms", "ce", "--seeds", *seeds, "--gpus", "2")
    assert rc == 0 and "plan for 2 GPUs (--gpus)" in err
    assert "3 runs of 3.2B tokens" in err and "2 waves of up to 2 runs side by side" in err
    assert [line.split()[0] for line in lines] == [
        "CUDA_VISIBLE_DEVICES=0",
        "CUDA_VISIBLE_DEVICES=1",
        "CUDA_VISIBLE_DEVICES=0",
    ]
    rc, lines, err = dry_run("--arms", "ce", "--gpus", "4", gpus="")
    assert rc == 0 and lines[0].startswith("torchrun --nproc_per_node=4 --nnodes=1")
    assert "plan for 4 GPUs per node" in err
    assert "1 run of 20B tokens (34.5 GPU-hours each" in err  # (the 500M: 160,900 tokens/s)
    assert "one run at a time over 4 GPUs: about 8.63 h" in err
    rc, lines, err = dry_run("--arms", "ce", "--gpus", "4", "--", "--training.steps", "9", gpus="")
    assert "training cost not estimated (--training.steps given after --)" in err
    rc, lines, err = dry_run("--scale", "smoke", "--arms", "ce", "--seeds", "1", "2", gpus="")
    assert rc == 0 and "training cost" not in err  # (on the CPU: its time instead)
    s = launch.SCALES["smoke"].cpu_run_seconds
    assert (
        f"training time on the CPU, estimated: 2 runs one at a time: about {2 * s / 60:.0f} min"
        in err
    )
    rc, _, err = dry_run("--scale", "smoke", "--arms", "ce", "--", "--training.steps", "9", gpus="")
    assert "training time not estimated (--training.steps given after --)" in err


def test_the_cpu_time_is_the_runs_one_after_another():
    assert launch.cpu_time(0, 100, 1) == "no run to train"
    said = launch.cpu_time(28, 180, 1)
    assert said.startswith(
        "training time on the CPU, estimated: 28 runs one at a time: about 84 min"
    )
    assert "not much less, measure it" in launch.cpu_time(3, 180, 2)
    # the machine's load now, where other work keeps its cores busy (not on an idle one)
    assert "load now" not in launch.cpu_time(3, 180, 1, (0.4, 2))
    said = launch.cpu_time(3, 180, 1, (7.7, 2))
    assert "; this machine's load now is 7.7 on 2 cores: expect longer" in said


def test_the_training_cost_counts_waves_by_their_longest_run():
    assert launch.training_cost([], 1.0, 1, 1) == "no run to train"
    said = launch.training_cost([3_600_000_000, 3_600_000_000, 7_200_000_000], 1e6, 2, 2)
    assert said.startswith("training cost, estimated: 3 runs averaging 4.8B tokens (each by its ")
    assert "= 4 GPU-hours; 2 waves of up to 2 runs side by side, 2 GPUs each: about 2 h" in said
    said = launch.training_cost([20_000_000_000] * 42, 160_900, 8, 1)  # the 500M, 3 seeds
    assert "42 runs of 20B tokens (34.5 GPU-hours each" in said and "= 1,450 GPU-hours" in said
    assert "one run at a time over 8 GPUs: about 181 h" in said


def test_a_plan_that_averages_more_checkpoints_than_a_run_keeps_is_refused(tmp_path):
    """A pilot run keeps 6 checkpoints (one every 1,016 of its 6,096 steps): a plan averaging 7
    is refused before anything runs, a dry run listing it (it was registered without a word, and
    only the report said so, after the runs); 6 is taken; the launch's overrides count."""
    from prefix_titan.sweep.analysis import PLAN

    plan = tmp_path / "plan.toml"
    args = ["--scale", "pilot", "--arms", "label_smoothing", "prefix_tau0.5", "--seeds", "1"]
    args += ["--sweep-dir", str(tmp_path / "sweep"), "--plan", str(plan)]
    for n, refused in ((7, True), (6, False)):
        plan.write_text(open(PLAN).read().replace("checkpoints = 3", f"checkpoints = {n}"))
        rc, _, err = dry_run(*args)
        err = " ".join(err.split())
        assert (rc == 2) is refused, err
        assert (
            f"the analysis plan {plan}: checkpoints = 7 averages each run's last 7 evaluated "
            "checkpoints, and a run of this launch keeps 6 (training.steps 6096, "
            "checkpoint.interval 1016): the plan's checkpoints must be 1 to 6 here"
        ) in err or not refused, err
    rc, _, err = dry_run(*args, "--", "--checkpoint.keep-latest-k=2")
    assert rc == 2 and "keeps 2 (training.steps 6096, checkpoint.interval 1016, checkpoint." in err
    assert launch.kept_checkpoints(
        {"training": {"steps": 40}, "checkpoint": {"enable": True, "interval": 15}},
        ["--training.steps", "45"],
    ) == (3, "training.steps 45, checkpoint.interval 15")
    assert launch.kept_checkpoints({"checkpoint": {"enable": False}}, []) is None
    # a setting left out is torchtitan's default: 10000 steps, a checkpoint every 500, the last
    # 10 kept (it read "keep all": 20)
    from torchtitan.config import JobConfig

    job = JobConfig()
    for key, value in launch.TORCHTITAN_DEFAULTS.items():
        section, name = key.split(".")
        assert getattr(getattr(job, section), name) == value, key
    assert launch.kept_checkpoints({"checkpoint": {"enable": True}}, [])[0] == 10


def test_a_launch_of_one_seed_says_the_report_needs_more_for_a_claim(tmp_path):
    """`--seeds 3` is one seed, numbered 3 (where `power --seeds 3` plans for three): a launch of
    one seed goes on (a smoke launch is legitimate) and says that the report needs 2 seeds for
    a claim and how to list three; no word where there are two, or where the sweep folder holds
    runs of another seed."""
    args = ["--scale", "pilot", "--arms", "label_smoothing", "prefix_tau0.5"]
    args += ["--sweep-dir", str(tmp_path / "sweep")]
    said = "one seed (--seeds 3 is the seed numbered 3, not 3 seeds): the report needs at least 2 "
    rc, _, err = dry_run(*args, "--seeds", "3")
    err = " ".join(err.split())
    assert rc == 0 and said in err and "list the seeds, --seeds 3 4 5 for three" in err, err
    rc, _, err = dry_run(*args)  # the config's seed
    assert rc == 0 and "one seed (the config's, 1234: no --seeds)" in " ".join(err.split()), err
    rc, _, err = dry_run(*args, "--seeds", "3", "4")
    assert rc == 0 and "one seed" not in err, err
    (tmp_path / "sweep" / "label_smoothing" / "seed7").mkdir(parents=True)
    rc, _, err = dry_run(*args, "--seeds", "3")
    assert rc == 0 and "one seed" not in err, err


def launch_here(*args, gpus=""):
    """(exit status, stderr) of a real `launch ARGS` on a node that shows `gpus`."""
    err = io.StringIO()
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    try:
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
            launch.main(["--root", str(project()), *args])
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    return e.value.code, err.getvalue()


def test_a_real_launch_still_needs_the_gpus():
    rc, err = launch_here("--scale", "pilot", "--arms", "ce")
    assert rc == 2 and "no GPU is visible (CUDA_VISIBLE_DEVICES, nvidia-smi)" in err, err
    rc, err = launch_here("--scale", "pilot", "--arms", "ce", "--gpus", "2")
    assert rc == 2 and "--gpus 2 plans a --dry-run only" in err, err


def test_the_runs_record_the_plan_their_launch_registered_and_it_is_registered_again(
    tmp_path, monkeypatch, capsys
):
    """The runs a launch starts get the registered plan's sha256 (LAUNCH_PLAN_ENV, which each
    start records); with the plan file removed after they began, a launch with other settings
    is refused, naming the digest, and one with the launched settings registers it again."""
    from prefix_titan.runs.folder import LAUNCH_PLAN_ENV, RUN_CONFIG, STARTS
    from prefix_titan.sweep.analysis import PLAN, load_plan, plan_digest, register_plan

    seen = []
    monkeypatch.setattr(
        launch, "preflight", lambda root, runs, device=None, sweep=None, world=None, dry=False: []
    )
    monkeypatch.setattr(
        launch,
        "run_queue",
        lambda *a, **k: seen.append(launch.run_env(k["plan_sha256"]).get(LAUNCH_PLAN_ENV)) or [],
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv(LAUNCH_PLAN_ENV, "left from an earlier shell")
    plan = tmp_path / "plan.toml"
    plan.write_text(open(PLAN).read().replace("alpha = 0.05", "alpha = 0.1"))
    digest = plan_digest(load_plan(str(plan)))
    sweep = tmp_path / "sweep"
    args = ["--root", str(project()), "--scale", "smoke", "--arms", "ce", "--seeds", "1"]
    args += ["--sweep-dir", str(sweep)]
    assert launch.main([*args, "--plan", str(plan)]) == 0 and seen == [digest]
    (sweep / "ce" / "seed1").mkdir(parents=True)  # the run that launch started began
    record = {STARTS: [{"at": "t", "plan_sha256": digest}]}
    (sweep / "ce" / "seed1" / RUN_CONFIG).write_text(json.dumps(record))
    os.remove(sweep / "analysis_plan.toml")
    with pytest.raises(SystemExit) as e:
        launch.main([*args, "--plan", PLAN])
    err = " ".join(capsys.readouterr().err.split())
    assert e.value.code == 2 and f"a registered plan (sha256 {digest[:12]}…) that is no " in err
    assert launch.main([*args, "--plan", str(plan)]) == 0 and seen == [digest, digest]
    registered = sweep / "analysis_plan.toml"
    assert "runs were launched under (its file was removed)" in registered.read_text()
    registered.chmod(0o644)  # replaced by another plan's registered copy, header and digest its own
    other = register_plan(str(tmp_path / "other"), PLAN)
    shutil.copyfile(other, registered)
    with pytest.raises(SystemExit) as e:
        launch.main(args)
    err = " ".join(capsys.readouterr().err.split())
    assert e.value.code == 2 and "it was replaced after the runs began: put back" in err


def test_a_launch_registers_its_plan_before_the_first_run(tmp_path, monkeypatch, capsys):
    from prefix_titan.sweep.analysis import PLAN, load_plan, plan_digest

    started = []

    def run_queue(jobs, groups, stop_on_failure, root, recheck=None, plan_sha256=None, **kw):
        started.append((tmp_path / "sweep" / "analysis_plan.toml").is_file())
        return []

    monkeypatch.setattr(
        launch, "preflight", lambda root, runs, device=None, sweep=None, world=None, dry=False: []
    )
    monkeypatch.setattr(launch, "run_queue", run_queue)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    plan = tmp_path / "plan.toml"
    plan.write_text(open(PLAN).read().replace("alpha = 0.05", "alpha = 0.1"))
    args = ["--root", str(project()), "--scale", "smoke", "--arms", "ce", "--seeds", "1"]
    args += ["--sweep-dir", str(tmp_path / "sweep")]
    assert launch.main([*args, "--plan", str(plan)]) == 0 and started == [True]
    assert "\nalpha = 0.1 " in (tmp_path / "sweep" / "analysis_plan.toml").read_text()
    err = capsys.readouterr().err
    assert f"analysis plan: {tmp_path / 'sweep' / 'analysis_plan.toml'}" in err
    assert "the plan's baseline, label_smoothing, is not among the arms launched here" in err
    assert (
        "the arms of kind prefix, prefix_norm: none launched here; not in the contrast: ce" in err
    )
    registered = tmp_path / "sweep" / "analysis_plan.toml"
    assert launch.main(args) == 0 and started == [True, True]  # a resume: the registered plan
    assert f"analysis plan: {registered}" in capsys.readouterr().err
    for dry in ([], ["--dry-run"]):  # another plan for the same sweep
        with pytest.raises(SystemExit) as e:
            launch.main([*args, "--plan", PLAN, *dry])
        assert e.value.code == 2 and started == [True, True]
        err = " ".join(capsys.readouterr().err.split())
        assert f"{registered}: the sweep registered another analysis plan before its runs" in err
        assert f"(it differs from {PLAN} in alpha)" in err and "resume without --plan" in err
    assert launch.main([*args, "--dry-run"]) == 0
    digest = plan_digest(load_plan(str(registered)))
    assert (  # what a run started by hand from the dry run's commands needs, as a launch gives it
        f"the analysis plan the sweep registered: {registered}; runs started by hand from the "
        f"commands above record it with PREFIX_TITAN_PLAN_SHA256={digest} in their environment\n"
    ) in capsys.readouterr().err
    registered.chmod(0o644)  # a setting edited after registration: said, the runs go on
    registered.write_text(registered.read_text().replace("alpha = 0.1", "alpha = 0.2"))
    assert launch.main([*args, "--dry-run"]) == 0
    assert f"registered: {registered} (which was edited after the sweep registered it" in (
        capsys.readouterr().err
    )
    fresh = [*args[:-1], str(tmp_path / "fresh"), "--plan", str(plan), "--dry-run"]
    assert launch.main(fresh) == 0
    err = capsys.readouterr().err
    assert f"registers the analysis plan {plan} in {tmp_path / 'fresh'}" in err
    # the runs started by hand from a dry run's commands: the plan registered first, no run
    register = (
        f"python -m prefix_titan.sweep launch --scale smoke --root {project()} --sweep-dir "
        f"{tmp_path / 'fresh'} --plan {plan} --register-plan"
    )
    assert (
        "register it first (a run begun before leaves the sweep without one for good): "
        f"{register}; runs started by hand" in err
    )
    by_hand = [*args[:-1], str(tmp_path / "by_hand"), "--plan", str(plan), "--register-plan"]
    assert launch.main(by_hand) == 0 and started == [True, True]
    assert f"PREFIX_TITAN_PLAN_SHA256={plan_digest(load_plan(str(plan)))} in their" in (
        capsys.readouterr().err
    )
    assert "\nalpha = 0.1 " in (tmp_path / "by_hand" / "analysis_plan.toml").read_text()
    with pytest.raises(SystemExit) as e:
        launch.main([*by_hand, "--dry-run"])
    assert e.value.code == 2 and "--dry-run writes nothing" in capsys.readouterr().err
    for old, new, says in [
        ('baseline = "label_smoothing"', 'baseline = "cee"', "the plan's baseline 'cee' is no arm"),
        (
            'contrast = ["prefix", "prefix_norm"]',
            'contrast = ["prefix_tau0.5"]',
            "the plan's contrast names 'prefix_tau0.5', the kind of no arm of the project",
        ),
    ]:
        plan.write_text(open(PLAN).read().replace(old, new))
        with pytest.raises(SystemExit):
            launch.main(fresh)
        err = capsys.readouterr().err
        assert says in err, err
    assert not (tmp_path / "fresh").exists()
    # the kinds along another axis; a baseline of a contrast kind is not compared with itself
    both = [*fresh[:5], "prefix_tau0.5", "prefix_tau1.0", *fresh[6:]]  # --arms in place of ce
    for old, new, says in [
        (
            'contrast = ["prefix", "prefix_norm"]',
            'axis = "epsilon"\ncontrast = ["prefix_tau0.5"]',
            "the arms of kind prefix_tau0.5: prefix_tau0.5; not in the contrast: prefix_tau1.0\n"
            "[sweep] note: no trend along the plan's axis epsilon: no arm of the contrast "
            "(prefix_tau0.5) lies on it",
        ),
        (
            'baseline = "label_smoothing"',
            'baseline = "prefix_tau1.0"',
            "compares with prefix_tau1.0 the arms of kind prefix, prefix_norm: prefix_tau0.5\n",
        ),
    ]:
        plan.write_text(open(PLAN).read().replace(old, new))
        assert launch.main(both) == 0
        assert says in capsys.readouterr().err
    # a sweep whose runs began before any plan was registered: none is registered now
    began = tmp_path / "began" / "ce" / "seed1"
    began.mkdir(parents=True)
    (began / "run_config.json").write_text("{}")
    old = [*args[:-1], str(tmp_path / "began"), "--dry-run"]
    assert launch.main(old) == 0
    err = capsys.readouterr().err
    assert "no analysis plan is registered: the runs in" in err
    assert "the report compares with it only once its runs are in the sweep folder" in err
    for seed in (2, 10):  # the baseline's runs there already: named, not said to be missing
        began = tmp_path / "began" / "label_smoothing" / f"seed{seed}"
        began.mkdir(parents=True)
        (began / "run_config.json").write_text("{}")
    assert launch.main(old) == 0
    assert (
        "the plan's baseline, label_smoothing, is not among the arms launched here; its runs "
        "in the sweep folder: seed2, seed10\n"
    ) in capsys.readouterr().err
    with pytest.raises(SystemExit):
        launch.main([*old, "--plan", PLAN])
    assert "registered now would not be pre-registered" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        launch.main([*args, "--plan", str(tmp_path / "none.toml"), "--dry-run"])
    assert f"--plan {tmp_path / 'none.toml'}: no such file" in capsys.readouterr().err


def test_a_plan_a_launch_registers_states_its_variance_rule(tmp_path):
    """A plan file without `variance` reads as "pooled" (plans written before the setting): a
    launch that would register one asks for the rule, naming both and the false-claim rate
    pooling has where the baseline is noisier, rather than registering the laxer rule unsaid."""
    from prefix_titan.sweep.analysis import PLAN

    text = open(PLAN).read()
    assert '\nvariance = "baseline_apart"\n' in text
    unset = tmp_path / "unset.toml"
    unset.write_text(text.replace('\nvariance = "baseline_apart"\n', "\n"))
    stated = tmp_path / "stated.toml"
    stated.write_text(text.replace('variance = "baseline_apart"', 'variance = "pooled"'))
    args = ["--scale", "pilot", "--arms", "label_smoothing", "prefix_tau0.5", "--seeds", "1"]
    for plan, sweep in ((unset, "a"), (stated, "b")):
        where = ["--sweep-dir", str(tmp_path / sweep), "--plan", str(plan)]
        rc, _, err = dry_run(*args, *where, gpus="4")
        said = 'it sets no `variance` (it would read as "pooled": one residual variance' in err
        assert (rc == 2, said) == ((True, True) if plan is unset else (False, False)), err
        if plan is unset:
            assert 'set variance = "baseline_apart" or "pooled"' in err
    # runs launched under such a plan (registered before launches asked), its file removed: the
    # same plan registers again, as the refusal of another one tells
    from prefix_titan.runs.folder import RUN_CONFIG, STARTS
    from prefix_titan.sweep.analysis import load_plan, plan_digest

    began = tmp_path / "began" / "label_smoothing" / "seed1"
    began.mkdir(parents=True)
    digest = plan_digest(load_plan(str(unset)))
    (began / RUN_CONFIG).write_text(json.dumps({STARTS: [{"at": "t", "plan_sha256": digest}]}))
    rc, _, err = dry_run(
        *args, "--sweep-dir", str(tmp_path / "began"), "--plan", str(unset), gpus="4"
    )
    assert "it sets no `variance`" not in err and rc == 0, err


def test_a_finished_sweep_resumed_starts_no_checking_process(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a process was started"))
    assert launch.preflight(ROOT, []) == []


def test_the_queue_keeps_going_after_a_failure_and_reports_it(tmp_path, capsys):
    from prefix_titan.sweep.launch import run_queue

    def job(name, code):
        script = f"import os, sys; print(os.environ['CUDA_VISIBLE_DEVICES']); sys.exit({code})"
        return (name, tmp_path / name / "launch.log", [sys.executable, "-c", script])

    jobs = [job("a", 0), job("b", 3), job("c", 0), job("d", 0)]
    failed = run_queue(jobs, [["0"], ["1"]])
    assert failed == [f"b (exit 3, log {tmp_path / 'b' / 'launch.log'})"]
    devices = {n: (tmp_path / n / "launch.log").read_text().strip() for n in "abcd"}
    assert devices["a"] == "0" and devices["b"] == "1" and set(devices.values()) == {"0", "1"}
    failed = run_queue([job("e", 1), job("f", 0), job("g", 0)], [["0"]], stop_on_failure=True)
    assert failed == [
        f"e (exit 1, log {tmp_path / 'e' / 'launch.log'})",
        "f (not started)",
        "g (not started)",
    ]


def test_cpu_runs_go_side_by_side_each_on_its_share_of_the_cores(tmp_path, monkeypatch):
    """--cpu-runs 2: two CPU slots. Each job here waits for the other's file, so one slot would
    never finish; each gets OMP_NUM_THREADS = cores / 2 unless the user set it."""
    from prefix_titan.sweep.launch import run_queue, slots

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)

    def job(me, other):
        script = (
            "import os, pathlib, sys, time\n"
            f"pathlib.Path({str(tmp_path / me)!r}).touch()\n"
            "end = time.time() + 60\n"
            f"while not os.path.exists({str(tmp_path / other)!r}) and time.time() < end:\n"
            "    time.sleep(0.05)\n"
            "print(os.environ.get('OMP_NUM_THREADS'), os.environ.get('CUDA_VISIBLE_DEVICES'))\n"
            f"sys.exit(0 if os.path.exists({str(tmp_path / other)!r}) else 1)\n"
        )
        return (me, tmp_path / "logs" / me, [sys.executable, "-c", script])

    assert slots([], 1, 2) == [[], []] and slots([], 1) == [[]]
    assert run_queue([job("a", "b"), job("b", "a")], slots([], 1, 2)) == []
    assert (tmp_path / "logs" / "a").read_text().split()[0] == "3"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert run_queue([job("c", "d"), job("d", "c")], slots([], 1, 2)) == []
    assert (tmp_path / "logs" / "c").read_text().split()[0] == "1"


@pytest.mark.parametrize(
    "args, gpus, says",
    [
        (["--cpu-runs", "0"], "", "--cpu-runs must be >= 1; got 0"),
        (
            ["--scale", "pilot", "--cpu-runs", "2"],
            "0,1",
            "--cpu-runs 2 places runs on the CPU, but 2 GPUs are planned",
        ),
        (["--scale", "500M", "--cpu-runs", "2"], "", "runs side by side on a CPU are for --scale"),
    ],
)
def test_cpu_runs_is_for_runs_on_a_cpu(args, gpus, says):
    rc, _, err = dry_run("--arms", "ce", *args, gpus=gpus)
    assert rc == 2 and says in err, err


def test_a_scale_without_configs_is_refused(monkeypatch, capsys):
    from prefix_titan.sweep.configs import Scale

    empty = Scale(
        "pilot.toml", "train_configs/not_generated", "./outputs/x", "./outputs/y", 1, 6400
    )
    monkeypatch.setitem(launch.SCALES, "pilot", empty)
    with pytest.raises(SystemExit) as e:
        launch.main(["--dry-run", "--scale", "pilot", "--root", str(project())])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--scale pilot has no configs for ce, label_smoothing" in err
    assert "run python -m prefix_titan.sweep configs" in err


@pytest.mark.slow
def test_a_folder_without_configs_is_refused(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "prefix_titan.sweep", "launch", "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "--root . holds no train_configs/ folder" in out.stderr, out.stderr


@pytest.mark.slow
def test_the_scripts_still_run_the_sweep_for_one_release(tmp_path):
    """scripts/launch_sweep.py and scripts/make_configs.py wrap the package's commands and find
    the project they sit in from wherever they are started (here: copied into the package's
    project folder, helpers.project, as the checkout ships it)."""
    scripts = project() / "scripts"
    scripts.mkdir(exist_ok=True)
    for name in ("launch_sweep.py", "make_configs.py"):
        shutil.copyfile(ROOT / "scripts" / name, scripts / name)
    wrapped = subprocess.run(
        [sys.executable, str(scripts / "launch_sweep.py"), "--dry-run", "--arms", "ce"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    _, lines, _ = dry_run("--arms", "ce")
    assert wrapped.stdout.splitlines() == lines, wrapped.stderr
    # 2 where this checkout has not prepared the 500M scale's data and tokenizer
    refused = wrapped.returncode == 2 and "a launch from here would be refused" in wrapped.stderr
    assert wrapped.returncode == 0 or refused, wrapped.stderr
    check = subprocess.run(
        [sys.executable, str(scripts / "make_configs.py"), "--check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and "up to date" in check.stdout, check.stdout + check.stderr
    for out, command in ((wrapped, "launch"), (check, "configs")):
        assert f"kept for one release; use `python -m prefix_titan.sweep {command}`" in out.stderr


def test_the_sweep_command_names_its_subcommands(capsys):
    from prefix_titan.sweep.__main__ import main

    assert main(["lanch"]) == 2
    assert (
        "the first argument must be one of configs, launch; got 'lanch'" in capsys.readouterr().err
    )
    assert main(["--help"]) == 0 and "configs" in capsys.readouterr().out


def test_a_failed_run_says_why_in_the_launch_log(tmp_path, capsys):
    """The queue prints the reason a run ended (its refusal, else its last exception line), read
    from what this attempt wrote to the log, not an earlier attempt's."""
    from prefix_titan.sweep.launch import failure_reason, run_queue

    log = tmp_path / "run" / "launch.log"
    log.parent.mkdir()
    log.write_text("[rank0]:error: an earlier attempt's refusal\n")
    script = (
        "import sys; print('[rank0]: Traceback (most recent call last):'); "
        "print('[rank0]: KeyError: 7'); "
        "print('[rank0]:torch.distributed.elastic.multiprocessing.errors.ChildFailedError: x'); "
        "print('[rank0]:error: objective.tau must be > 0; got -1'); sys.exit(2)"
    )
    assert run_queue([("ce seed 1", log, [sys.executable, "-c", script])], [[]]) != []
    out = capsys.readouterr().out
    assert "ce seed 1: FAILED, exit 2: objective.tau must be > 0; got -1" in out
    traceback = "Traceback (most recent call last):\n  File 'x'\nValueError: bad\n"
    log.write_text(traceback + "torch.distributed.elastic...ChildFailedError:\n")
    assert failure_reason(log) == "ValueError: bad"
    assert failure_reason(log, start=log.stat().st_size) is None  # nothing written: no reason
    killed = (  # torchrun's summary of a worker killed by a signal (kill -9, out of memory)
        "[W] traceback : Signal 9 (SIGKILL) received by PID 28436\n"
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
    )
    log.write_text(killed)
    assert failure_reason(log) == "Signal 9 (SIGKILL) received by PID 28436"
    preempted = (  # SIGTERM: the run's own line says what resumes it, before torchrun's summary
        "[rank0]:terminated: the newest checkpoint is R/checkpoint/step-10; the same command "
        "resumes from it\n[W] traceback : Signal 15 (SIGTERM) received by PID 7\n"
    )
    log.write_text(preempted)
    assert failure_reason(log).startswith("terminated: the newest checkpoint is R/checkpoint/")


def test_a_plan_on_the_cpu_says_how_many_runs_go_at_once(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    rc, lines, err = dry_run("--scale", "smoke", "--arms", "ce", "--cpu-runs", "2", gpus="")
    assert rc == 0 and "on the CPU: 2 runs at a time, each with OMP_NUM_THREADS=4" in err, err
    rc, lines, err = dry_run("--scale", "smoke", "--arms", "ce", gpus="")
    assert rc == 0 and "on the CPU: one run at a time (--cpu-runs N runs N at once)" in err, err


@pytest.mark.slow  # three processes that import torchtitan
def test_a_finished_run_is_skipped_only_where_the_launch_would_train_it_alike(tmp_path):
    """A launch skips a run whose final checkpoint is there; with other settings than the run
    recorded (another learning rate after `--`), it refuses, for the sweep would then compare
    runs trained otherwise under one name."""
    from torchtitan.config import ConfigManager

    from prefix_titan.runs.folder import RUN_CONFIG, run_record, write_json
    from prefix_titan.sweep.__main__ import configs_main
    from prefix_titan.sweep.configs import SCALES, load_config

    (tmp_path / "train_configs").mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        assert configs_main(["--root", str(tmp_path)]) == 0
    config = load_config(tmp_path, "smoke", "ce")
    run = tmp_path / launch.run_folder(config, 1, SCALES["smoke"].sweep)
    finish(run, config)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # (the launch's arguments name files under its root)
    try:
        job = ConfigManager().parse_args(launch.train_args("smoke", "ce", config, 1, 1, [], None))
    finally:
        os.chdir(cwd)
    write_json(str(run / RUN_CONFIG), run_record(job))
    args = ("--scale", "smoke", "--arms", "ce", "--seeds", "1")
    rc, lines, err = dry_run(*args, gpus="", root=tmp_path, checks=True)
    assert rc == 0 and lines == [f"# ce seed 1: {launch.SKIPPED}"], (lines, err)
    # what the launcher sets from the GPUs a run gets (its local batches, validation steps):
    # no difference for a run it skips
    more = ("--training.local_batch_size", "1", "--validation.steps", "3")
    rc, lines, err = dry_run(*args, "--", *more, gpus="", root=tmp_path, checks=True)
    assert rc == 0 and lines == [f"# ce seed 1: {launch.SKIPPED}"], (lines, err)
    rc, lines, err = dry_run(
        *args, "--", "--optimizer.lr", "1e-5", gpus="", root=tmp_path, checks=True
    )
    assert rc == 2, (lines, err)
    assert "ce seed 1: " in err and "a finished run with other settings" in err, err
    assert "optimizer.lr: " in err and "-> 1e-05" in err, err
    assert "another --sweep-dir" in err and "job.dump_folder" not in err, err  # the sweep's knob
    assert "A launch may differ from a finished run's record only in: training.steps (" in err
    assert "validation.*, training.local_batch_size, parallelism.*." in err, err


@pytest.mark.slow  # two processes that import torchtitan
def test_a_plan_for_gpus_made_without_them_checks_runs_as_the_gpus_will_run_them(tmp_path):
    """A sweep planned on a machine without GPUs (a login node) for GPUs is checked for the GPUs:
    a finished run that ran the Triton rows there (objective.kernel = 'auto' on a GPU) is
    skipped, not refused as trained otherwise, and `kernel = 'triton'` is no refusal. A plan for
    the CPU (--gpus 0, smoke) is checked for the CPU, where the same record is another run."""
    from torchtitan.config import ConfigManager

    from prefix_titan.runs.folder import RESOLVED, RUN_CONFIG, run_record, write_json
    from prefix_titan.sweep.__main__ import configs_main
    from prefix_titan.sweep.configs import SCALES, load_config

    (tmp_path / "train_configs").mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        assert configs_main(["--root", str(tmp_path)]) == 0
    for scale, seed in (("pilot", 1), ("smoke", 1)):
        config = load_config(tmp_path, scale, "ce")
        run = tmp_path / launch.run_folder(config, seed, SCALES[scale].sweep)
        finish(run, config)
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            args = launch.train_args(scale, "ce", config, seed, 1, [], None)
            record = run_record(ConfigManager().parse_args(args))
        finally:
            os.chdir(cwd)
        record[RESOLVED] = {"kernel": "triton", "fused_chunk_tokens": None}  # as a GPU ran it
        write_json(str(run / RUN_CONFIG), record)
    skipped = [f"# ce seed 1: {launch.SKIPPED}"]
    pilot = ("--scale", "pilot", "--arms", "ce", "--seeds", "1")
    rc, lines, err = dry_run(*pilot, gpus="", root=tmp_path, checks=True)
    assert rc == 0 and lines == skipped and "refused" not in err, (lines, err)
    rc, lines, err = dry_run(
        *pilot, "--", "--objective.kernel", "triton", gpus="", root=tmp_path, checks=True
    )
    assert rc == 0 and lines == skipped and "refused" not in err, (lines, err)
    smoke = ("--scale", "smoke", "--arms", "ce", "--seeds", "1")
    rc, lines, err = dry_run(*smoke, gpus="", root=tmp_path, checks=True)
    assert rc == 2 and "a finished run with other settings" in err, (lines, err)
    assert "objective.kernel: 'triton' -> 'pytorch'" in err
    assert "compared as resolved on cpu" in err, err


def test_the_queue_does_not_write_a_log_through_a_link(tmp_path):
    """A run's launch.log that is a symbolic link is not written through (the log would reach
    another file): that run is not started and said so, the others run."""
    from prefix_titan.sweep.launch import run_queue

    victim = tmp_path / "victim.txt"
    victim.write_text("kept\n")
    (tmp_path / "a").mkdir()
    os.symlink(victim, tmp_path / "a" / "launch.log")
    cmd = [sys.executable, "-c", "print('trained')"]
    failed = run_queue(
        [("a", tmp_path / "a" / "launch.log", cmd), ("b", tmp_path / "b" / "launch.log", cmd)],
        [[]],
    )
    assert len(failed) == 1 and failed[0].startswith("a (not started: "), failed
    assert "is a symbolic link" in failed[0]
    assert victim.read_text() == "kept\n"
    assert (tmp_path / "b" / "launch.log").read_text().strip() == "trained"


def test_a_run_another_process_writes_is_left_to_it_and_one_finished_meanwhile_skipped(
    tmp_path, capsys
):
    """The queue asks, just before it starts a job and again after a job failed, whether the run
    is still this launch's: one another live process writes, or one finished meanwhile, is said
    so and skipped, not counted as failed; the writer is found without taking its lock."""
    from helpers import holding_lock

    from prefix_titan.runs.lock import writer
    from prefix_titan.sweep.launch import run_queue

    held = tmp_path / "held"
    held.mkdir()
    assert writer(str(held)) is None and writer(str(tmp_path / "none")) is None
    holder = holding_lock(held, command="sweep launch B")
    try:
        found = writer(str(held))
        assert found["pid"] == holder.pid and found["command"] == "sweep launch B"
        assert writer(str(held))["pid"] == holder.pid  # asking took nothing
    finally:
        holder.kill()
        holder.wait()
    assert writer(str(held)) is None  # a record left by a process that is gone: takeable

    asked = []

    def recheck(name):  # c: another launch finished it while its start here was refused
        asked.append(name)
        if name == "c":
            return launch.SKIPPED if asked.count("c") > 1 else None
        return "being written by pid 7; skipped" if name == "b" else None

    def job(name, code, say=""):
        script = f"import sys; print({say!r}); sys.exit({code})"
        return (name, tmp_path / name / "launch.log", [sys.executable, "-c", script])

    busy = "error: c is being written by pid 7 on h since t: B"
    jobs = [job("a", 0), job("b", 0), job("c", 2, busy)]
    assert run_queue(jobs, [[]], recheck=recheck) == []
    out = capsys.readouterr().out
    assert "[sweep] b: being written by pid 7; skipped" in out
    assert not (tmp_path / "b").exists()  # never started
    assert "[sweep] c: FAILED" not in out, out
    assert f"[sweep] c: {launch.SKIPPED} (its start here was refused: c is being written" in out
    log = (tmp_path / "c" / "launch.log").read_text().splitlines()  # the writer's own log too
    assert log[0] == busy and log[1].startswith("[sweep] a start of this run by another launch")
    assert "its lines, from byte 0 of this log to here among the writer's own, are not" in log[1]
    assert asked == ["a", "b", "c", "c"]  # before each start, and after c failed
    failed = run_queue([job("d", 3)], [[]], recheck=lambda name: None)
    assert failed == [f"d (exit 3, log {tmp_path / 'd' / 'launch.log'})"]
    # a run that failed for its own reason is a failure, whatever holds its folder after it (its
    # own leftover processes, say)
    later = iter([None, "being written by pid 9; skipped"])
    failed = run_queue([job("e", 4, "error: out of memory")], [[]], recheck=lambda n: next(later))
    assert failed == [f"e (exit 4, log {tmp_path / 'e' / 'launch.log'})"]
    assert "[sweep] e: FAILED, exit 4: out of memory" in capsys.readouterr().out


def test_a_launch_checks_each_run_again_just_before_it_starts_it(tmp_path, monkeypatch, capsys):
    """Two launches into one sweep folder: what the other one finished or writes by the time a
    run's turn comes is not started (the launch's queue asks again), and a launch that finds
    another writer in its sweep folder as it starts says so, naming its pid."""
    import argparse

    from helpers import holding_lock

    from prefix_titan.sweep.configs import load_config

    sweep = tmp_path / "sweep"
    args = ["--root", str(project()), "--scale", "smoke", "--seeds", "1", "--sweep-dir", str(sweep)]
    args += ["--arms", "ce", "label_smoothing", "prefix_tau0.5"]
    folders = {
        arm: sweep / arm / "seed1" for arm in ("ce", "label_smoothing", "prefix_tau0.5", "x")
    }
    holders, seen = [], {}

    def run_queue(
        jobs, groups, stop_on_failure, root, recheck=None, plan_sha256=None, started=None
    ):
        assert [name for name, _, _ in jobs] == ["ce seed 1", "label_smoothing seed 1"]
        finish(folders["label_smoothing"], load_config(ROOT, "smoke", "label_smoothing"))
        folders["ce"].mkdir(parents=True)
        holders.append(holding_lock(folders["ce"], command="sweep launch A"))
        seen.update({name: recheck(name) for name, _, _ in jobs})
        return []

    monkeypatch.setattr(
        launch, "preflight", lambda root, runs, device=None, sweep=None, world=None, dry=False: []
    )
    monkeypatch.setattr(launch, "run_queue", run_queue)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    folders["prefix_tau0.5"].mkdir(parents=True)
    holders.append(holding_lock(folders["prefix_tau0.5"], command="sweep launch B"))
    try:
        assert launch.main(args) == 0
        out, err = capsys.readouterr()
        pid = holders[0].pid
        assert f"[sweep] prefix_tau0.5 seed 1: being written by pid {pid} on " in out, out
        assert f"other processes write in {sweep} now: prefix_tau0.5/seed1 (pid {pid}" in err
        assert seen["label_smoothing seed 1"] == launch.SKIPPED
        assert seen["ce seed 1"].startswith(f"being written by pid {holders[1].pid} on ")
        assert "sweep launch A; skipped: that process writes this run" in seen["ce seed 1"]
        assert "left to the processes that write them (not failed; " in err
        assert err.rstrip().endswith(": prefix_tau0.5 seed 1, ce seed 1"), err
        # over several nodes every node's launcher must start the same runs: no writer asked
        many = argparse.Namespace(root=project(), scale="smoke", sweep_dir=str(sweep), nnodes=2)
        assert launch.taken(many, "prefix_tau0.5", 1, []) is None
        assert launch.taken(many, "label_smoothing", 1, []) == launch.SKIPPED
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


def test_a_sweep_runs_refusal_for_a_live_writer_names_the_sweeps_way_out(tmp_path):
    from helpers import holding_lock

    from prefix_titan.runs.lock import FolderBusy, RunLock
    from prefix_titan.titan.preflight import SWEEP_ELSEWHERE

    holder = holding_lock(tmp_path)
    try:
        with pytest.raises(FolderBusy) as e:
            RunLock(str(tmp_path), elsewhere=SWEEP_ELSEWHERE).acquire()
        assert f"is being written by pid {holder.pid}" in str(e.value)
        assert "another --sweep-dir" in str(e.value)
        assert "job.dump_folder" not in str(e.value)
        with pytest.raises(FolderBusy, match="a training: another job.dump_folder"):
            RunLock(str(tmp_path)).acquire()  # a run of its own: its own way out
    finally:
        holder.kill()
        holder.wait()


def _record(steps=40, warmup=4, seed=1, name="ce", **objective):
    return {
        "job": {"dump_folder": f"./sweep/{name}/seed{seed}", "description": ""},
        "objective": {"name": name, "tau": 0.5, "kernel": "auto", **objective},
        "training": {"steps": steps, "local_batch_size": 8},
        "lr_scheduler": {"warmup_steps": warmup},
        "debug": {"seed": seed},
        "resolved": {"kernel": "pytorch", "fused_chunk_tokens": None},
    }


def test_a_launch_refuses_settings_the_sweeps_runs_do_not_share(tmp_path):
    """Seeds 1 and 2 trained 40 steps: a seed 3 launched with `--training.steps 20` (and another
    warmup) is refused, naming each setting, its values and the runs, and the ways out; another
    arm or seed alike is no difference, nor is a setting the runs recorded before it existed."""
    from prefix_titan.runs.folder import RUN_CONFIG, write_json
    from prefix_titan.sweep.runs import invariant_violations, matched_settings, unmatched
    from prefix_titan.sweep.runs import launch_conflicts as conflicts

    def _unmatched(starting, folder, extra):
        return conflicts(starting, folder, extra, "cpu")

    sweep = tmp_path / "sweep"
    for arm, seed in (("ce", 1), ("ce", 2), ("label_smoothing", 1)):
        (sweep / arm / f"seed{seed}").mkdir(parents=True)
        write_json(str(sweep / arm / f"seed{seed}" / RUN_CONFIG), _record(seed=seed, name=arm))
    new = _record(steps=20, warmup=2, seed=3, name="prefix")
    starting = [("prefix seed 3", str(sweep / "prefix" / "seed3"), new)]
    extra = ["--training.steps", "20", "--lr_scheduler.warmup-steps=2"]
    [(problem, names)] = _unmatched(starting, str(sweep), extra)
    assert names == ["prefix seed 3"]
    assert f"settings differ from the runs already in the sweep folder {sweep}" in problem
    assert "training.steps: 20 here, 40 in ce/seed1, ce/seed2, label_smoothing/seed1" in problem
    assert "lr_scheduler.warmup_steps: 2 here, 4 in ce/seed1" in problem
    assert "drop --training.steps, --lr_scheduler.warmup-steps after --" in problem  # as given
    assert "give another --sweep-dir" in problem
    # the report's notion: what it checks after the fact is what a launch refuses
    assert {p.split("`")[1] for p in invariant_violations(_runs(sweep, new))} == {
        "training.steps",
        "lr_scheduler.warmup_steps",
    }
    others = [("ce/seed1", _record())]
    assert unmatched(_record(seed=3, name="label_smoothing"), others) == []  # arms, seeds: free
    assert unmatched(_record(kernel="triton"), others) == []  # compared as resolved
    newer = _record()
    newer["training"]["new_setting"] = 1
    assert unmatched(newer, others) == []  # the runs predate the setting
    assert "training.new_setting" in matched_settings(newer)
    # not from this launch's overrides: the runs' own, or a config changed since
    [(problem, _)] = _unmatched(starting, str(sweep), [])
    assert "regenerate the configs as the runs had them" in problem
    said = "training.steps: the runs already there were launched with it set after -- (launch "
    said += "with the same `-- --training.steps ...`), or the scale's config changed since"
    assert said in problem
    # the run's own record is its resume's business (check_resume), not compared here
    own = [("ce seed 1", str(sweep / "ce" / "seed1"), _record(steps=20))]
    assert "ce/seed1" not in _unmatched(own, str(sweep), extra)[0][0]
    # a local batch the launch set for another GPU count (the same sequences per step) is no
    # difference; one given after -- is
    placed = _record(seed=3, name="prefix")
    placed["training"]["local_batch_size"] = 4
    starting = [("prefix seed 3", str(sweep / "prefix" / "seed3"), placed)]
    assert _unmatched(starting, str(sweep), []) == []
    [(problem, _)] = _unmatched(starting, str(sweep), ["--training.local_batch_size", "4"])
    assert "training.local_batch_size: 4 here, 8 in ce/seed1" in problem
    # the report lists it, saying the launch sets it
    [line] = invariant_violations(_runs(sweep, placed))
    assert "`training.local_batch_size` differs" in line and "the launch sets it" in line
    # what a resumed run may change is no difference either (how often it logs, checkpoints...)
    chatty = _record(seed=3, name="prefix")
    chatty["metrics"] = {"log_freq": 1}
    chatty["checkpoint"] = {"interval": 5}
    starting = [("prefix seed 3", str(sweep / "prefix" / "seed3"), chatty)]
    assert _unmatched(starting, str(sweep), ["--metrics.log_freq", "1"]) == []
    assert "metrics.log_freq" not in matched_settings(chatty)
    # ... but what decides which steps are validated or kept to evaluate is, and so is a
    # validation setting the launch does not set
    for key, value in (("freq", 500), ("seq_len", 512)):
        other = _record(seed=3, name="prefix")
        other["validation"] = {key: value}
        for arm, seed in (("ce", 1), ("ce", 2), ("label_smoothing", 1)):
            record = _record(seed=seed, name=arm)
            record["validation"] = {key: 100}
            write_json(str(sweep / arm / f"seed{seed}" / RUN_CONFIG), record)
        [(problem, _)] = _unmatched([("p", str(sweep / "prefix" / "seed3"), other)], str(sweep), [])
        assert f"validation.{key}: {value} here, 100 in ce/seed1" in problem
    # a difference in the data read names its cause, not the configs
    moved = _record(seed=3, name="prefix")
    moved["data_files"] = {"train": "abc"}
    for arm, seed in (("ce", 1), ("ce", 2), ("label_smoothing", 1)):
        record = _record(seed=seed, name=arm)
        record["data_files"] = {"train": "def"}
        write_json(str(sweep / arm / f"seed{seed}" / RUN_CONFIG), record)
    [(problem, _)] = _unmatched([("p", str(sweep / "prefix" / "seed3"), moved)], str(sweep), [])
    assert "data_files.train: the data or tokenizer files differ" in problem, problem


def _runs(sweep, new):
    from prefix_titan.runs.folder import RUN_CONFIG, read_json

    runs = [
        {"name": p.parent.parent.name, "seed": int(p.parent.name[4:]), "config": read_json(str(p))}
        for p in sorted(sweep.glob(f"*/seed*/{RUN_CONFIG}"))
    ]
    return runs + [{"name": "prefix", "seed": 3, "config": new}]


def test_configs_in_a_new_project_folder_with_its_arms_makes_train_configs(tmp_path, capsys):
    from prefix_titan.sweep.__main__ import configs_main

    with pytest.raises(SystemExit) as e:
        configs_main(["--root", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"--root {tmp_path} holds no train_configs/ folder (nor sweep_arms.toml)" in err
    assert "`mkdir train_configs`" in err
    (tmp_path / "sweep_arms.toml").write_text('[[arm]]\nname = "prefix"\ntau = 0.3\n')
    assert configs_main(["--check", "--root", str(tmp_path)]) == 1  # --check writes nothing
    assert not (tmp_path / "train_configs").exists()
    arms = (tmp_path / "sweep_arms.toml").read_text()
    (tmp_path / "sweep_arms.toml").write_text(arms + "position_gamma = 1.5\n")
    with pytest.raises(SystemExit):  # refused: no folder made, none said made
        configs_main(["--root", str(tmp_path)])
    assert "made " not in capsys.readouterr().out
    assert not (tmp_path / "train_configs").exists()
    (tmp_path / "sweep_arms.toml").write_text(arms)
    assert configs_main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"made {tmp_path / 'train_configs'}/" in out and "wrote 45 configs for 15 arms" in out
    assert (tmp_path / "train_configs" / "smoke" / "prefix_tau0.3.toml").is_file()


def test_every_arm_clash_is_named_at_once(tmp_path):
    shutil.copytree(project() / "train_configs", tmp_path / "train_configs")
    (tmp_path / "sweep_arms.toml").write_text(
        '[[arm]]\nname = "ce"\n\n[[arm]]\nname = "label_smoothing"\n\n'
        '[[arm]]\nname = "prefix"\ntau = 0.3\n'
    )
    rc, _, err = dry_run("--scale", "smoke", gpus="", root=tmp_path)
    assert rc == 2, err
    assert "the sweep's arms name 2 arms twice:\n  two arms 'ce': the same objective" in err
    assert "\n  two arms 'label_smoothing': the same objective is listed twice (it is a " in err


def test_an_unknown_arm_without_an_arms_file_says_none_was_found_there(tmp_path):
    shutil.copytree(project() / "train_configs", tmp_path / "train_configs")
    rc, _, err = dry_run("--scale", "smoke", "--arms", "my_arm", gpus="", root=tmp_path)
    assert rc == 2 and "--arms my_arm: no such arm; the arms are ce, " in err, err
    assert (
        f"an [[arm]] of sweep_arms.toml in the project folder; --root {tmp_path} holds none)" in err
    )
    rc, _, err = dry_run("--arms", "prefix_tau05", root=tmp_path)
    assert (
        "--arms prefix_tau05: no such arm (prefix_tau05: did you mean prefix_tau0.5?); the " in err
    )
    (tmp_path / "sweep_arms.toml").write_text('[[arm]]\nname = "prefix"\ntau = 0.3\n')
    rc, _, err = dry_run("--scale", "smoke", "--arms", "my_arm", gpus="", root=tmp_path)
    assert rc == 2 and "holds none" not in err, err


@pytest.mark.slow  # two processes that import torchtitan
def test_a_seed_launched_with_another_budget_into_a_sweep_is_refused(tmp_path):
    """Seeds 1 and 2 trained 40 steps; seed 3 with `-- --training.steps 20
    --lr_scheduler.warmup_steps 2` would not be compute-matched with them: the dry run lists the
    refusal (status 2) naming the settings, their values and the runs; the same budget plans."""
    from torchtitan.config import ConfigManager

    from prefix_titan.runs.folder import RUN_CONFIG, run_record, write_json
    from prefix_titan.sweep.__main__ import configs_main
    from prefix_titan.sweep.configs import SCALES, load_config

    (tmp_path / "train_configs").mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        assert configs_main(["--root", str(tmp_path)]) == 0
    config = load_config(tmp_path, "smoke", "ce")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for seed in (1, 2):
            run = tmp_path / launch.run_folder(config, seed, SCALES["smoke"].sweep)
            finish(run, config)
            args = launch.train_args("smoke", "ce", config, seed, 1, [], None)
            write_json(str(run / RUN_CONFIG), run_record(ConfigManager().parse_args(args)))
    finally:
        os.chdir(cwd)
    args = ("--scale", "smoke", "--arms", "ce", "--seeds", "3")
    rc, lines, err = dry_run(*args, gpus="", root=tmp_path, checks=True)
    assert rc == 0 and len(lines) == 1 and "refused" not in err, err
    budget = ("--", "--training.steps", "20", "--lr_scheduler.warmup_steps", "2")
    rc, lines, err = dry_run(*args, *budget, gpus="", root=tmp_path, checks=True)
    assert rc == 2 and len(lines) == 1, err
    assert "ce seed 3: settings differ from the runs already in the sweep folder" in err
    assert "training.steps: 20 here, 40 in ce/seed1, ce/seed2" in err, err
    assert "lr_scheduler.warmup_steps: 2 here, " in err
    assert "drop --training.steps, --lr_scheduler.warmup_steps after --" in err
    assert "give another --sweep-dir" in err
    # the runs already there, launched again with another budget: each is refused alike, in one
    # line naming both (one paragraph per run, each naming its folder, before)
    again = (
        "--scale",
        "smoke",
        "--arms",
        "ce",
        "--seeds",
        "1",
        "2",
        "--",
        "--training.steps",
        "60",
    )
    rc, _, err = dry_run(*again, gpus="", root=tmp_path, checks=True)
    refusals = [x for x in err.splitlines() if x.startswith("  ce seed")]
    assert rc == 2 and len(refusals) == 1, err
    folders = [f"./outputs/sweep_smoke/ce/{s}" for s in ("seed1", "seed2")]
    assert refusals[0].startswith(
        f"  ce seed 1, ce seed 2 (its run folder: {', '.join(folders)}): "
    )
    assert "its run folder holds" in refusals[0] and refusals[0].count("seed1") == 1, err
    # a run refused alone: its own words, its folder in them (a command in it can be pasted)
    rc, _, err = dry_run(*again[:5], "1", *again[7:], gpus="", root=tmp_path, checks=True)
    refusals = [x for x in err.splitlines() if x.startswith("  ce seed")]
    assert rc == 2 and len(refusals) == 1 and "its run folder" not in refusals[0], err
    assert "ce/seed1" in refusals[0], err


def test_one_run_at_a_time_over_the_node_checks_each_run_before_and_after(
    tmp_path, monkeypatch, capsys
):
    """--gpus-per-run node: a run whose start failed is a failure (its output went to the
    terminal, so the launch cannot tell a refusal for another writer from its own end), named with
    what holds its folder now; the runs the other launch finished or writes by their turn are not
    started."""
    from helpers import holding_lock

    from prefix_titan.sweep.configs import load_config

    sweep = tmp_path / "sweep"
    args = ["--root", str(project()), "--scale", "smoke", "--seeds", "1", "--sweep-dir", str(sweep)]
    args += ["--arms", "ce", "label_smoothing", "prefix_tau0.5"]
    args += ["--gpus-per-run", "node", "--nproc-per-node", "1"]
    holders, started = [], []

    def run(children, cmd, cwd=None, env=None):
        started.append(cmd[cmd.index("--job.config_file") + 1])
        finish(sweep / "label_smoothing" / "seed1", load_config(ROOT, "smoke", "label_smoothing"))
        for arm in ("ce", "prefix_tau0.5"):
            (sweep / arm / "seed1").mkdir(parents=True)
            holders.append(holding_lock(sweep / arm / "seed1", command=f"launch B {arm}"))
        return type("Ended", (), {"wait": lambda self: 1})()

    monkeypatch.setattr(
        launch, "preflight", lambda root, runs, device=None, sweep=None, world=None, dry=False: []
    )
    monkeypatch.setattr(launch.Children, "start", run)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # (a CPU node: nvidia-smi not asked)
    try:
        assert launch.main(args) == 1
        out, err = capsys.readouterr()
        assert started == ["train_configs/smoke/ce.toml"]
        a, b = (h.pid for h in holders)
        assert f"ce seed 1 (exit 1; now being written by pid {a} on " in err, err
        assert f"label_smoothing seed 1: {launch.SKIPPED}" in out
        assert f"prefix_tau0.5 seed 1: being written by pid {b} on " in out, out
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


def test_a_terminated_launch_ends_its_runs_with_it(capsys):
    """A SIGTERM to the launcher (a `kill` of it) is passed on to the runs it started, which end
    (they ran on without it); the launch then exits with status 143, saying how to resume."""
    import signal

    with pytest.raises(SystemExit) as e, launch.Children() as children:
        run = children.start([sys.executable, "-c", "import time; time.sleep(60)"])
        done = children.start([sys.executable, "-c", "pass"])
        done.wait()
        os.kill(os.getpid(), signal.SIGTERM)
    assert e.value.code == 143 and run.returncode == -signal.SIGTERM
    assert (
        "[sweep] terminated: SIGTERM passed on to the 1 run(s) going, which ended; the same "
        in (capsys.readouterr().err)
    )
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # as it was


def test_a_sweep_folder_that_cannot_be_written_is_refused_before_anything(tmp_path, monkeypatch):
    """A read-only sweep folder ended a launch in a traceback at its first run (its dry run said
    nothing): refused with exit status 2 by both, naming the folder (or, for one to be made, the
    existing folder that would hold it). os.access is what tells: root writes where modes say no."""
    ro = tmp_path / "ro"
    (ro / "ce" / "seed1").mkdir(parents=True)
    real = os.access
    monkeypatch.setattr(
        launch.os, "access", lambda p, m: False if str(p).startswith(str(ro)) else real(p, m)
    )
    assert launch.unwritable(tmp_path / "rw") is None
    (tmp_path / "a_file").write_text("")
    assert (
        launch.unwritable(tmp_path / "a_file" / "x")
        == f"{tmp_path / 'a_file'} is a file, not a folder"
    )
    assert launch.unwritable(ro).startswith(f"{ro} cannot be written by this user")
    assert f"it does not exist yet, and {ro} holds it" in launch.unwritable(ro / "new" / "sweep")
    rc, lines, err = dry_run("--scale", "smoke", "--arms", "ce", "--seeds", "1", "--sweep-dir",
                             str(ro), gpus="")  # fmt: skip
    assert rc == 2 and not lines, err
    assert f"--sweep-dir {ro}: {ro} cannot be written by this user, or lies on a read-only" in err


def test_a_launch_terminated_while_it_waits_on_a_run_ends_it_and_exits():
    """A run over the whole node is waited on (Popen.wait, which holds the run's wait lock): the
    SIGTERM handler waited on it again inside that wait and hung the launcher for good. Now it
    exits 143 with its line, the run ended by the SIGTERM passed on (in a process of its own, so
    that a hang fails the test by its timeout)."""
    script = (
        "import os, signal, sys, threading\n"
        "from prefix_titan.sweep import launch\n"
        "with launch.Children() as children:\n"
        "    run = children.start([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "    print(run.pid, flush=True)\n"
        "    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
        "    run.wait()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 143, out.stderr
    assert "[sweep] terminated: SIGTERM passed on to the 1 run(s) going, which ended" in out.stderr
    with pytest.raises(ProcessLookupError):  # the run ended (and was waited for)
        os.kill(int(out.stdout.split()[0]), 0)


def test_a_sigterm_as_the_launch_block_ends_still_ends_its_runs(capsys, monkeypatch):
    """A SIGTERM that comes as the block ends, before the handler is put back, raised out of
    __exit__ itself: a traceback, exit status 1, the run left running without its launcher. It is
    taken as any SIGTERM: the run signalled and waited for, exit 143, the handler put back."""
    import signal

    real, calls = signal.signal, []

    def late(signum, handler):
        calls.append(handler)
        if len(calls) == 1:  # the restore in __exit__: the signal comes before it takes effect
            raise launch._Terminated
        return real(signum, handler)

    with pytest.raises(SystemExit) as e, launch.Children() as children:
        run = children.start([sys.executable, "-c", "import time; time.sleep(60)"])
        monkeypatch.setattr(launch.signal, "signal", late)
    assert e.value.code == 143 and run.returncode == -signal.SIGTERM
    assert "SIGTERM passed on to the 1 run(s) going, which ended" in capsys.readouterr().err
    assert len(calls) == 2 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_interrupted_launch_waits_for_its_runs_and_says_how_to_resume(capsys, monkeypatch):
    """Ctrl-C at a terminal reaches the launcher and its runs: it ended in a traceback of the
    launcher's loop. Now it waits for the runs to end on their own Ctrl-C, sends it to those
    still going after the grace (the launcher's alone was interrupted: `kill -INT`), and exits
    with status 130 in one line."""
    monkeypatch.setattr(launch.Children, "GRACE", 0.5)
    slow = (
        "import signal, time; signal.signal(signal.SIGINT, lambda *a: exit(130)); "
        "print('ready', flush=True); time.sleep(60)"
    )
    with pytest.raises(SystemExit) as e, launch.Children() as children:
        run = children.start([sys.executable, "-c", slow], stdout=subprocess.PIPE, text=True)
        assert run.stdout.readline() == "ready\n"  # (its handler set)
        raise KeyboardInterrupt
    assert e.value.code == 130 and run.returncode == 130  # ended by the SIGINT passed on
    err = capsys.readouterr().err
    assert "[sweep] interrupted: 1 run(s) going ended (Ctrl-C); the same command resumes" in err


def test_an_override_names_the_setting_it_sets_either_spelling_or_negated():
    """`--a.b-c 1`, `--a.b_c=1` and a boolean's negation `--a.no-b` (the parser's) name a.b_c and
    a.b; this reading holds because no setting's own name begins with no_."""
    import dataclasses

    from torchtitan.config import JobConfig as TitanJobConfig

    from prefix_titan.config import JobConfig
    from prefix_titan.sweep.configs import override_flags

    extra = ["--training.steps", "20", "--lr_scheduler.warmup-steps=2", "--validation.no-enable"]
    extra += ["--compile.no_enable", "--objective.no-normalize", "x", "--help"]
    assert [setting for setting, _ in override_flags(extra)] == [
        "training.steps",
        "lr_scheduler.warmup_steps",
        "validation.enable",
        "compile.enable",
        "objective.normalize",
        "help",
    ]
    assert [flag for _, flag in override_flags(extra)][1:3] == [
        "--lr_scheduler.warmup-steps",
        "--validation.no-enable",
    ]  # (as given, for the messages)

    def names(cls, prefix=""):
        for f in dataclasses.fields(cls):
            if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(
                f.default_factory()
            ):
                yield from names(type(f.default_factory()), f"{prefix}{f.name}.")
            else:
                yield prefix + f.name

    settings = list(names(TitanJobConfig)) + list(names(JobConfig))
    assert "validation.enable" in settings and "objective.normalize" in settings
    assert not [s for s in settings if s.rpartition(".")[2].startswith("no_")]
