"""Scoring shared by the character probes: accuracy, and bits per byte of the gold answer
(lm-eval's bits_per_byte aggregation: -sum(loglikelihood) / sum(bytes) / ln 2)."""


def process_results(doc: dict, results: list) -> dict:
    loglikelihoods = [ll for ll, _ in results]
    gold = int(doc["gold"])
    best = max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__)
    n_bytes = len(doc["choices"][gold].encode("utf-8"))
    return {"acc": float(best == gold), "bits_per_byte": (loglikelihoods[gold], n_bytes)}
