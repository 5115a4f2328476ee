"""scripts/bench_train.py's report: each run's tokens/s with its spread over the timed steps and
how many were timed, and a note where that is fewer than 3 (torchtitan's runs stood in for by
their logs)."""

import subprocess
import sys

from helpers import load_script


def _log(tps: list[int], memory: list[float]) -> str:
    return "\n".join(
        f"[rank0]: step: {s:2d}  loss:  7.1234  grad_norm:  1.5  memory: {m:5.2f}GiB(3.1%)  "
        f"tps: {t:,}  tflops: 0.01  mfu: 0.00%"
        for s, (t, m) in enumerate(zip(tps, memory), 1)
    )


def _report(monkeypatch, capsys, logs: dict, *args: str) -> tuple[str, str]:
    """bench_train's main on `args`, each (fused?, batch) run answered by logs[fused, batch]."""
    bench = load_script("bench_train")
    monkeypatch.setattr(bench, "local_command", lambda *a, **k: list(a))

    def run(args, **_):
        key = (
            "--objective.fused_loss" in args,
            int(args[args.index("--training.local_batch_size") + 1]),
        )
        return subprocess.CompletedProcess(args, 0, stdout=logs[key], stderr="")

    monkeypatch.setattr(bench.subprocess, "run", run)
    monkeypatch.setattr(sys, "argv", ["bench_train.py", "--flavor", "tiny", *args])
    bench.main()
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_each_rows_tokens_per_second_comes_with_its_spread_and_timed_steps(monkeypatch, capsys):
    # steps 1-2 are warm-up; steps 3-6 timed: median 250, spread 40-400
    logs = {
        (fused, 2): _log([10, 20, 400, 200, 300, 40], [1.0, 1.1, 1.2, 1.2, 1.3, 1.2])
        for fused in (False, True)
    }
    out, err = _report(monkeypatch, capsys, logs, "--batches", "2", "--steps", "6")
    assert "| unfused | 2 | 250 | 40-400 | 4 | 1.30 | yes |" in out, out
    assert "| fused | 2 | 250 | 40-400 | 4 | 1.30 | yes |" in out, out
    assert "| spread tokens/s (slowest-fastest step) | timed steps |" in out, out
    assert "250 tok/s (40-400 over 4 timed steps)" in err, err
    assert "note:" not in out, out


def test_fewer_than_three_timed_steps_are_noted(monkeypatch, capsys):
    logs = {(fused, 2): _log([10, 20, 300, 40], [1.0] * 4) for fused in (False, True)}
    out, _ = _report(monkeypatch, capsys, logs, "--batches", "2", "--steps", "4")
    assert "| unfused | 2 | 170 | 40-300 | 2 | 1.00 | yes |" in out, out
    assert "note: tokens/s from 2 timed step(s) per run" in out, out
    assert "time at least 3 (--steps 5 or more)" in out, out
