"""Scoring shared by the character probes: accuracy, accuracy with each choice's log-likelihood
divided by its length in bytes (lm-eval's acc_norm), and bits per byte of the gold answer
(lm-eval's bits_per_byte aggregation: -sum(loglikelihood) / sum(bytes) / ln 2)."""


def process_results(doc: dict, results: list) -> dict:
    loglikelihoods = [ll for ll, _ in results]
    lengths = [len(c.encode("utf-8")) for c in doc["choices"]]
    gold = int(doc["gold"])
    best = max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__)
    per_byte = [ll / n for ll, n in zip(loglikelihoods, lengths)]
    best_norm = max(range(len(per_byte)), key=per_byte.__getitem__)
    return {
        "acc": float(best == gold),
        "acc_norm": float(best_norm == gold),
        "bits_per_byte": (loglikelihoods[gold], lengths[gold]),
    }
