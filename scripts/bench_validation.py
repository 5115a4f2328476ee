"""What the validation metrics (prefix_titan/objectives/mechanism.py) cost: a validation batch's
forward pass and loss with plain CE only, against the same with every validation metric, unfused
(from the logits) and fused (the head's chunks), on this machine.

    python scripts/bench_validation.py [--flavor tiny_128k] [--hf-assets-path DIR]
        [--batch 4] [--seq-len 512] [--repeats 5]

The tokenizer gives the token texts the metrics need (prefix sets, lengths); by default the
embedded BPE, padded to the flavor's vocabulary. Prints the median time of each over alternating runs, the
median paired difference, and its share of the plain-CE pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch
from tokenizers import Tokenizer

from prefix_titan.model.flavors import FLAVORS
from prefix_titan.model.transformer import FusedHeadTransformer
from prefix_titan.objectives import ObjectiveSpec, build_plan, build_target_table, token_texts
from prefix_titan.objectives.mechanism import mechanism_tables
from prefix_titan.titan.metrics import ValidationMeter


def seconds(fn) -> float:
    """CPU time of the process (all its threads): steadier than wall time on a shared machine."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def paired_medians(a, b, repeats: int) -> tuple[float, float, float]:
    """(median a, median b, median of b - a) over `repeats` alternating runs (after a warm-up of
    each): on a noisy machine the paired difference is steadier than two medians."""
    a(), b()
    pairs = [(seconds(a), seconds(b)) for _ in range(repeats)]
    return (
        statistics.median(p[0] for p in pairs),
        statistics.median(p[1] for p in pairs),
        statistics.median(p[1] - p[0] for p in pairs),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--flavor", default="tiny_128k", choices=sorted(FLAVORS))
    p.add_argument("--hf-assets-path", default="assets/embedded_tokenizer")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    for flag, value in (("--batch", a.batch), ("--seq-len", a.seq_len), ("--repeats", a.repeats)):
        if value < 1:
            p.error(f"{flag} must be a whole number >= 1; got {value}")
    torch.manual_seed(0)
    args = dataclasses.replace(FLAVORS[a.flavor], max_seq_len=a.seq_len)
    tok = Tokenizer.from_file(os.path.join(a.hf_assets_path, "tokenizer.json"))
    texts = token_texts(tok, args.vocab_size)
    mechanism = mechanism_tables(texts)
    tokens = torch.randint(0, tok.get_vocab_size(), (a.batch, a.seq_len))
    labels = torch.randint(0, tok.get_vocab_size(), (a.batch, a.seq_len))
    rows = []
    for fused in (False, True):
        spec = ObjectiveSpec("prefix", tau=0.5, fused_loss=fused)
        table = build_target_table(texts, spec)
        plan = build_plan(spec, table, device_type="cpu", dim=args.dim, mechanism=mechanism)
        model = FusedHeadTransformer(args)
        with torch.no_grad():
            model.init_weights()
        model.eval()
        meter = ValidationMeter()

        def plain(model=model, plan=plan, fused=fused):
            with torch.no_grad():
                if fused:
                    return model(tokens, labels=labels)[1]
                return plan.logits_loss(model(tokens), labels, weighted=False)[1]

        def measured(model=model, plan=plan, fused=fused, meter=meter):
            with torch.no_grad():
                if fused:
                    return model(tokens, labels=labels)[1]
                meter.add(plan.validation_sums(model(tokens), labels))

        if fused:
            head = model.output

            def plain_head(plain=plain, head=head, plan=plan):
                head.set_plan(plan)  # no meter: plain CE from the head's chunks
                plain()

            def measured_head(measured=measured, head=head, plan=plan, meter=meter):
                head.set_plan(plan, meter)
                measured()

            timings = paired_medians(plain_head, measured_head, a.repeats)
        else:
            timings = paired_medians(plain, measured, a.repeats)
        rows.append(("fused head" if fused else "logits", *timings))
    n = a.batch * a.seq_len
    print(
        f"{a.flavor}, {n:,} tokens per batch ({a.batch} x {a.seq_len}), vocabulary "
        f"{args.vocab_size:,}, {torch.get_num_threads()} CPU threads; median of {a.repeats}\n"
    )
    print("| loss | plain CE ms | with the validation metrics ms | paired difference | share |")
    print("|---|---:|---:|---:|---:|")
    for name, t_plain, t_measured, diff in rows:
        print(
            f"| {name} | {t_plain * 1e3:.1f} | {t_measured * 1e3:.1f} | {diff * 1e3:+.1f} ms | "
            f"{diff / t_plain:+.1%} |"
        )


if __name__ == "__main__":
    main()
