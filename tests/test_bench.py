"""scripts/bench_loss.py runs every case of a mode in one process and measures each case's own
peak memory (tiny sizes on a CPU: whether it works, not how fast)."""

import argparse
import json
import re
import subprocess
import sys

import pytest
from helpers import ROOT, load_script


@pytest.mark.slow
def test_bench_loss_prints_a_measured_row_per_case(tmp_path):
    out = subprocess.run(
        [sys.executable, "scripts/bench_loss.py", "--tokens", "512", "--dim", "64"]
        + ["--vocab", "4099", "--k", "9", "--dtype", "float32", "--repeats", "2"]
        + ["--modes", "eager", "--cases", "torchtitan_ce", "head_matmuls", "prefix_tau0.5"]
        + ["fused_prefix_tau0.5"]
        + ["--chunk-tokens", "128", "512", "--json", str(tmp_path / "rows.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {
        m.group(1): (float(m.group(2)), int(m.group(3)))
        for m in re.finditer(
            r"^\| ([\w.]+(?: @\d+)?) \| eager \| ([\d.]+) \| [\d.]+-[\d.]+ \| [^|]+ \| (\d+) \|",
            out.stdout,
            re.M,
        )
    }
    fused = ["fused_prefix_tau0.5 @128", "fused_prefix_tau0.5 @512"]  # a row per chunk size
    assert set(rows) == {"torchtitan_ce", "head_matmuls", "prefix_tau0.5", *fused}, out.stdout
    assert all(ms > 0 for ms, _ in rows.values())
    logits_mib = 512 * 4099 * 4 / 2**20  # 8 MiB: the unfused cases hold at least the logits
    assert rows["torchtitan_ce"][1] >= logits_mib and rows["prefix_tau0.5"][1] >= logits_mib
    for case in fused:  # never the [N, V] logits
        assert rows[case][1] < rows["torchtitan_ce"][1], case
    # The goals: the unfused eager row held to torchtitan's eager CE, with its ratio to the floor
    # (the fused rows are held to a compiled CE row, not measured here).
    goals = re.findall(
        r"^\| (\S+) \| eager \| <= 1.00x eager CE time.* \| ([\d.]+)x \| (yes|no) \|$",
        out.stdout,
        re.M,
    )
    assert [case for case, _, _ in goals] == ["prefix_tau0.5"], out.stdout
    saved = json.loads((tmp_path / "rows.json").read_text())
    ms = {r["case"]: r["ms"] for r in saved}
    assert float(goals[0][1]) == pytest.approx(ms["prefix_tau0.5"] / ms["head_matmuls"], abs=0.006)
    # Spread and bytes: fp32 logits, the synthetic prefix table has no uniform part, so the
    # eager unfused passes move 24 + 24 bytes per logit (objectives/kernel.py's passes)
    for r in saved:
        assert r["ms_min"] <= r["ms"] <= r["ms_max"] and r["peak_min"] <= r["peak_max"], r
    moved = {r["case"]: r["bytes_per_logit"] for r in saved}
    assert moved["prefix_tau0.5"] == pytest.approx(48.0, abs=0.05)
    assert moved["head_matmuls"] is None and moved["torchtitan_ce"] > 0
    assert "the goals are for bf16 logits; these are float32" in out.stdout


def _row(case, mode, ms, mib, chunk=None):
    return {"case": case, "mode": mode, "ms": ms, "peak_bytes": mib * 2**20, "chunk_tokens": chunk}


def test_goals_hold_each_row_to_torchtitans_ce_in_the_mode_the_goal_names():
    bench = load_script("bench_loss")
    chunk_choice, goal_rows = bench.chunk_choice, bench.goal_rows

    rows = [
        _row("torchtitan_ce", "eager", 52.0, 24000),
        _row("torchtitan_ce", "compiled", 22.0, 8000),
        _row("head_matmuls", "eager", 16.0, 4000),
        _row("ce", "eager", 50.0, 9000),  # faster, 0.375x memory: met
        _row("triton_ce", "eager", 53.0, 9000),  # 1.02x time: not met
        _row("ce", "compiled", 23.0, 8000),  # no goal for compiled unfused
        _row("fused_ce", "eager", 23.0, 2000, 2048),  # held to compiled CE: 1.045x, 0.25x: met
        _row("fused_ce", "compiled", 22.0, 2100, 2048),  # 0.26x memory: not met
        _row("fused_ce", "eager", 25.0, 1500, 1024),
        _row("fused_ce", "compiled", 24.0, 1500, 1024),
        _row("fused_triton_ce", "compiled", 21.0, 3000, 4096),
        _row("fused_triton_ce", "compiled", 21.5, 1900, 2048),
    ]
    held = {(_label_of(g["row"]), g["row"]["mode"]): g for g in goal_rows(rows)}
    assert set(held) == {
        ("ce", "eager"),
        ("triton_ce", "eager"),
        ("fused_ce @2048", "eager"),
        ("fused_ce @2048", "compiled"),
        ("fused_ce @1024", "eager"),
        ("fused_ce @1024", "compiled"),
        ("fused_triton_ce @4096", "compiled"),
        ("fused_triton_ce @2048", "compiled"),
    }
    assert held["ce", "eager"]["met"] and held["ce", "eager"]["floor"] == 50.0 / 16.0
    assert not held["triton_ce", "eager"]["met"]
    assert held["fused_ce @2048", "eager"]["met"]
    assert held["fused_ce @2048", "eager"]["time"] == pytest.approx(23.0 / 22.0)
    assert held["fused_ce @2048", "eager"]["floor"] == 23.0 / 16.0
    assert not held["fused_ce @2048", "compiled"]["met"]
    assert held["fused_ce @2048", "compiled"]["floor"] is None  # no compiled floor row
    # pytorch: 2048 is faster in total but over the memory bound in compiled mode -> 1024;
    # triton: 4096 is over the bound -> 2048.
    assert chunk_choice(rows) == {"pytorch": (1024, None), "triton": (2048, None)}
    heavier = [{**r, "peak_bytes": 2500 * 2**20} if r["chunk_tokens"] == 1024 else r for r in rows]
    assert chunk_choice(heavier) == {
        "pytorch": None,  # no measured chunk size fits
        "triton": (2048, None),
    }


def test_traffic_goals_hold_each_path_to_its_bytes_per_logit():
    bench = load_script("bench_loss")
    rows = [
        {**_row("ce", "eager", 1, 1), "bytes_per_logit": 40.0},  # unfused eager: <= 50
        {**_row("ce", "compiled", 1, 1), "bytes_per_logit": 8.1},  # no goal for it
        {**_row("fused_ce", "eager", 1, 1, 64), "bytes_per_logit": 26.0},  # fused: <= 20
        {**_row("fused_ce", "compiled", 1, 1, 64), "bytes_per_logit": 8.1},
        {**_row("fused_triton_ce", "eager", 1, 1, 64), "bytes_per_logit": 6.0},  # <= 6
        {**_row("head_matmuls", "eager", 1, 1), "bytes_per_logit": None},
    ]
    held = {(bench._label(g["row"]), g["row"]["mode"]): g["met"] for g in bench.traffic_goals(rows)}
    assert held == {
        ("ce", "eager"): True,
        ("fused_ce @64", "eager"): False,
        ("fused_ce @64", "compiled"): True,
        ("fused_triton_ce @64", "eager"): True,
    }


def test_bytes_goals_are_judged_for_bf16_logits_only(capsys):
    """bf16 rows: a table whose goal column says it is for bf16; other dtypes: no verdict."""
    bench = load_script("bench_loss")
    rows = [{**_row("fused_ce", "eager", 1, 1, 64), "bytes_per_logit": 32.0}]
    bench.print_traffic_goals(rows, "bfloat16")
    out = capsys.readouterr().out
    assert "against its path's goal (stated for bf16 logits)" in out
    assert "| goal (bf16) | met |" in out and "| 32.0 | <= 20 | no |" in out, out
    bench.print_traffic_goals(rows, "float32")
    out = capsys.readouterr().out
    assert "these are float32 (no verdict" in out and "| no |" not in out, out


def test_row_blocks_are_tried_on_the_eager_pytorch_cases_and_the_fastest_named():
    bench = load_script("bench_loss")
    a = argparse.Namespace(
        cases=["torchtitan_ce", "ce", "triton_ce", "fused_ce", "head_matmuls"],
        chunk_tokens=[64, 2048],
        row_block_mib=[32, 64, 256],
        device="cuda",
        vocab=128256,
        tokens=16384,
        dim=1024,
    )
    left_out = []
    eager = bench._rows(a, "eager", left_out)
    assert ("torchtitan_ce", None, None) in eager and ("triton_ce", None, None) in eager
    assert ("head_matmuls", None, None) in eager
    # 32 MiB walks 65 rows of V = 128,256, 64 MiB 130, 256 MiB 523: three blocks unfused
    assert {r for r in eager if r[0] == "ce"} == {("ce", None, b) for b in (32, 64, 256)}
    # a 64-token chunk is one block at any of them: measured once, at the first
    assert {r for r in eager if r[0] == "fused_ce"} == {
        ("fused_ce", 64, 32),
        *(("fused_ce", 2048, b) for b in (32, 64, 256)),
    }
    assert left_out == [("fused_ce", 64, 64), ("fused_ce", 64, 256)]
    assert all(block is None for _, _, block in bench._rows(a, "compiled"))

    def row(case, mode, ms, chunk=None, block=None, mib=1):
        return {**_row(case, mode, ms, mib, chunk), "row_block_mib": block}

    rows = [
        row("torchtitan_ce", "compiled", 22.0, mib=8000),
        row("ce", "eager", 50.0, block=32),
        row("ce", "eager", 60.0, block=256),
        row("label_smoothing", "eager", 55.0, block=32),
        row("label_smoothing", "eager", 40.0, block=256),  # in total: 32: 105 ms, 256: 100 ms
        row("fused_ce", "eager", 9.0, 1024, 32),
        row("fused_ce", "eager", 12.0, 1024, 256),
        row("fused_ce", "eager", 13.0, 2048, 32),
        row("fused_ce", "eager", 11.0, 2048, 256),
        row("fused_ce", "compiled", 5.0, 1024),  # no block: counts with every pair at 1024
        row("fused_ce", "compiled", 4.0, 2048),
        row("triton_ce", "eager", 10.0),
    ]
    assert bench.block_choice(rows) == 256
    # pairs in total, eager + compiled: (1024, 32) 14 ms, (1024, 256) 17, (2048, 32) 17,
    # (2048, 256) 15: the fastest pair measured
    assert bench.chunk_choice(rows) == {"pytorch": (1024, 32)}
    rows[5]["peak_bytes"] = 3000 * 2**20  # over 0.25x of torchtitan's 8000 MiB
    assert bench.chunk_choice(rows) == {"pytorch": (2048, 256)}
    assert bench._label(rows[5]) == "fused_ce @1024 /32MiB"
    assert bench.block_choice([r for r in rows if r["row_block_mib"] != 256]) is None


def test_a_choice_whose_spread_overlaps_another_options_says_it_is_not_told_apart(capsys):
    """The chosen chunk size (or block) is still named, with its consumers' setting, and said to
    be not told apart from each option whose time spread (in total) overlaps its own; a row faster
    than its floor is flagged as noisy timings. Neither where the spreads are apart."""
    bench = load_script("bench_loss")

    def row(case, ms, lo, hi, chunk=None, block=None):
        return {
            **_row(case, "eager", ms, 1, chunk),
            "row_block_mib": block,
            "ms_min": lo,
            "ms_max": hi,
        }

    overlapping = [
        row("head_matmuls", 10.0, 9.5, 10.5),
        row("fused_ce", 22.9, 22.2, 89.2, 64),  # the trial's spreads: 64 first by its median
        row("fused_ce", 144.9, 11.8, 154.0, 128),
        row("fused_ce", 300.0, 290.0, 310.0, 256),  # apart from 64's
        row("ce", 30.0, 29.0, 31.0, block=32),
        row("ce", 33.0, 30.5, 35.0, block=64),  # overlaps 32's
        row("label_smoothing", 8.0, 7.9, 8.1),  # below the floor's 10 ms
    ]
    assert bench.chunk_choice(overlapping) == {"pytorch": (64, None)}
    assert bench.overlapping(bench.chunk_totals(overlapping)["pytorch"], (64, None)) == [
        (128, None)
    ]
    bench.print_goals(overlapping, repeats=3)
    out = capsys.readouterr().out
    chunk_line = next(line for line in out.splitlines() if "row passes: 64 tokens" in line)
    assert "(objective.fused_chunk_tokens = 64); but its spread (22.2-89.2 ms in total) " in (
        chunk_line
    )
    assert (
        "overlaps that of 128 tokens per chunk (11.8-154.0 ms): not told apart at --repeats 3; "
        in chunk_line
    )
    assert "256 tokens" not in chunk_line, chunk_line
    block_line = next(line for line in out.splitlines() if "MiB blocks are the fastest" in line)
    assert block_line.startswith("Unfused eager PyTorch row passes: 32 MiB blocks are"), block_line
    assert (
        "(objective.row_block_mib = 32); but its spread (29.0-31.0 ms in total) overlaps that of "
        "64 MiB blocks (30.5-35.0 ms): not told apart at --repeats 3" in block_line
    ), block_line
    assert (
        "label_smoothing (eager) takes 0.80x the time of head_matmuls, below its floor: "
        "the timings are noisy" in out
    ), out
    assert out.count("below its floor") == 1, out

    apart = [
        row("head_matmuls", 10.0, 9.5, 10.5),
        row("fused_ce", 22.9, 22.2, 23.5, 64),
        row("fused_ce", 144.9, 140.0, 154.0, 128),
        row("ce", 30.0, 29.0, 31.0, block=32),
        row("ce", 33.0, 32.0, 35.0, block=64),
    ]
    bench.print_goals(apart)
    out = capsys.readouterr().out
    assert "(objective.fused_chunk_tokens = 64)\n" in out, out
    assert "(objective.row_block_mib = 32)\n" in out, out
    assert "not told apart" not in out and "below its floor" not in out, out
    # without the repeats known (rows read back without a recorded setup) the line says so
    bench.print_goals(overlapping[:3])
    assert "not told apart at these repeats; " in capsys.readouterr().out


def test_a_measurement_keeps_time_and_memory_from_the_runs_that_measured_them():
    merge = load_script("bench_loss").merge_measure
    timed = {"case": "ce", "ms": 5.0, "peak_bytes": 7, "peak_min": 6, "peak_max": 8}
    row: dict = {}
    merge(row, timed, "both")  # CUDA: one process measures both
    assert row == timed
    row = {}
    merge(row, timed, "time")  # CPU: the timed run, then the memory run's peaks
    merge(row, {**timed, "ms": 99.0, "peak_bytes": 3, "peak_min": 2, "peak_max": 4}, "memory")
    assert row == {"case": "ce", "ms": 5.0, "peak_bytes": 3, "peak_min": 2, "peak_max": 4}


def _label_of(row):
    _label = load_script("bench_loss")._label

    return _label(row)


@pytest.mark.slow
def test_bench_loss_triton_cases_need_a_gpu_or_the_interpreter():
    """On a CPU the triton cases are refused by name; in Triton's interpreter one mode's process
    runs them (one process, not the whole table: the interpreter is slow)."""
    import os

    import torch

    if torch.cuda.is_available():
        return  # on a GPU the cases run; the check below is the CPU's refusal
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    args = [sys.executable, "scripts/bench_loss.py", "--tokens", "16", "--dim", "8"]
    args += ["--vocab", "300", "--k", "5", "--dtype", "float32", "--repeats", "1"]
    args += ["--modes", "eager", "--cases", "triton_prefix_tau0.5", "fused_triton_prefix_tau0.5"]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 1 and "need --device cuda" in out.stderr
    out = subprocess.run(
        args + ["--device", "cpu", "--mode-run", "eager", "time"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env | {"TRITON_INTERPRET": "1"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["case"] for r in rows] == ["triton_prefix_tau0.5", "fused_triton_prefix_tau0.5"]
    assert all(r["ms"] > 0 for r in rows)


def _saved(path, rows, setup="LM head (d=8) + loss, N=64 V=4099 bfloat16 logits on a GPU"):
    full = [
        {
            "row_block_mib": None,
            "ms_min": r["ms"],
            "ms_max": r["ms"],
            "peak_min": r["peak_bytes"],
            "peak_max": r["peak_bytes"],
            "bytes_per_logit": 6.0,
            "dtype": "bfloat16",
            "setup": setup,
            **r,
        }
        for r in rows
    ]
    path.write_text(json.dumps(full))
    return str(path)


def _rows_run(*args):
    return subprocess.run(
        [sys.executable, "scripts/bench_loss.py", "--rows", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_saved_rows_of_two_calls_are_judged_as_one_table(tmp_path):
    """--rows reads the eager and the compiled rows of two calls as one table: the fused head's
    eager rows meet the compiled CE they are held to (absent from the eager call alone), and the
    chunk size is chosen within the memory goal, which the eager call alone cannot do."""
    eager = _saved(
        tmp_path / "eager.json",
        [
            _row("torchtitan_ce", "eager", 47.0, 24000),
            _row("fused_triton_ce", "eager", 23.0, 1500, 4096),
            _row("fused_triton_ce", "eager", 22.0, 2500, 8192),
        ],
    )
    compiled = _saved(
        tmp_path / "compiled.json",
        [
            _row("torchtitan_ce", "compiled", 22.0, 8000),
            _row("fused_triton_ce", "compiled", 23.0, 1500, 4096),
            _row("fused_triton_ce", "compiled", 22.5, 2500, 8192),
        ],
    )
    alone = _rows_run(eager)
    assert alone.returncode == 0, alone.stderr
    assert "8192 tokens per chunk" in alone.stdout and "memory not held" in alone.stdout
    assert "compiled CE time" not in alone.stdout  # no goal without the compiled CE
    both = _rows_run(eager, compiled, "--json", str(tmp_path / "both.json"))
    assert both.returncode == 0, both.stderr
    out = both.stdout
    assert "rows from " + eager + ", " + compiled in out
    # 8,192 is faster in both modes but over 0.25x the compiled CE's memory (2500 / 8000)
    assert "triton row passes: 4096 tokens per chunk" in out and "within the memory goal" in out
    # the eager fused row's goal cells: time and memory against the other file's compiled CE
    goal = re.search(
        r"^\| fused_triton_ce @4096 \| eager \| <= 1.05x compiled CE time, <= 0.25x its memory "
        r"\| ([\d.]+)x \| ([\d.]+)x \| [^|]+ \| (yes|no) \|$",
        out,
        re.M,
    )
    assert goal, out
    assert float(goal.group(1)) == pytest.approx(23.0 / 22.0, abs=0.005)
    assert float(goal.group(2)) == pytest.approx(1500 / 8000, abs=0.005)
    assert goal.group(3) == "yes"
    # --rows given twice reads both lists of files
    twice = _rows_run(eager, "--rows", compiled)
    assert twice.returncode == 0 and "rows from " + eager + ", " + compiled in twice.stdout
    assert len(json.loads((tmp_path / "both.json").read_text())) == 6


def test_saved_rows_say_the_repeats_their_setup_records_when_a_choice_is_not_told_apart(
    tmp_path,
):
    rows = [
        {**_row("fused_ce", "eager", 20.0, 1, 2048), "ms_min": 18.0, "ms_max": 30.0},
        {**_row("fused_ce", "eager", 25.0, 1, 4096), "ms_min": 24.0, "ms_max": 26.0},
    ]
    saved = _saved(tmp_path / "rows.json", rows, setup="loss alone, N=64; median of 3")
    out = _rows_run(saved)
    assert out.returncode == 0, out.stderr
    assert "(objective.fused_chunk_tokens = 2048); but its spread (18.0-30.0 ms in total) " in (
        out.stdout
    )
    assert "4096 tokens per chunk (24.0-26.0 ms): not told apart at --repeats 3;" in out.stdout


@pytest.mark.slow
def test_saved_rows_that_cannot_make_one_table_are_refused(tmp_path):
    eager = _saved(tmp_path / "eager.json", [_row("torchtitan_ce", "eager", 47.0, 24000)])
    other = _saved(
        tmp_path / "other.json",
        [_row("torchtitan_ce", "compiled", 22.0, 8000)],
        setup="LM head (d=8) + loss, N=128 V=4099 bfloat16 logits on a GPU",
    )
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "text.json").write_text("not json")
    (tmp_path / "bad.json").write_text(json.dumps([_row("ce", "eager", 1.0, 1)]))
    nan = _saved(tmp_path / "nan.json", [{**_row("ce", "eager", 1.0, 1), "ms": "x"}])
    zero = _saved(tmp_path / "zero.json", [_row("torchtitan_ce", "eager", 0.0, 1)])
    listed = _saved(tmp_path / "listed.json", [_row("ce", "eager", 1.0, 1, [4096])])
    old = tmp_path / "old.json"  # saved before rows recorded their dtype
    old.write_text(
        json.dumps(
            [
                {k: v for k, v in r.items() if k != "dtype"}
                for r in json.loads((tmp_path / "eager.json").read_text())
            ]
        )
    )
    wide = _saved(tmp_path / "fp32.json", [{**_row("ce", "compiled", 1.0, 1), "dtype": "float32"}])
    cases = {
        (eager, eager): "torchtitan_ce (eager) is in both",
        (eager, other): "the files' setups differ",
        (str(tmp_path / "empty.json"),): "holds no rows",
        (str(tmp_path / "text.json"),): "text.json: Expecting value",
        (str(tmp_path / "bad.json"),): "a row without ms_min",
        (str(tmp_path / "nowhere.json"),): "No such file",
        (nan,): "with ms not a finite number, ms_min not a finite number",
        (zero,): "with ms not above 0",
        (listed,): "with chunk_tokens neither null nor a whole number",
        (str(old), wide): "rows saved without a recorded dtype are taken as --dtype",
        (eager, "--dtype", "float32"): "--dtype float32, but "
        + eager
        + " holds rows measured with",
        (eager, "--modes", "eager"): "--modes cannot go with it",
        (eager, "--chunk-tokens", "4096"): "--chunk-tokens cannot go with it",
        (eager, "--repeats", "5"): "--repeats cannot go with it",  # the default, given
        (eager, "--row-b", "64"): "--row-block-mib cannot go with it",  # abbreviated
    }
    for args, said in cases.items():
        out = _rows_run(*args)
        assert out.returncode == 2 and said in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
