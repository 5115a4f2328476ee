"""Get the Llama-3 tokenizer files (tokenizer.json, tokenizer_config.json) for the sweep, either way:

python scripts/download_tokenizer.py [--out assets/hf/Llama-3.1-8B]
    from the gated hub repository (hf auth login; accept the licence first)
python scripts/download_tokenizer.py --source llama-models [--out assets/hf/Llama-3.1-8B]
    converted from the tokenizer Meta ships in the `llama-models` PyPI package
    (pip install -e ".[llama3]"; no hub access). Same ids as tiktoken with Llama-3's ranks,
    pattern and 256 special tokens (BOS <|begin_of_text|> = 128000, EOS <|end_of_text|> = 128001).
"""

from __future__ import annotations

import argparse
import sys


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--source", default="hub", choices=["hub", "llama-models"])
    p.add_argument("--repo-id", default="meta-llama/Llama-3.1-8B", help="--source hub only")
    p.add_argument("--out", default="assets/hf/Llama-3.1-8B")
    p.add_argument("--token", default=None, help="HF access token (default: the logged-in one)")
    a = p.parse_args()
    if a.source == "llama-models":
        from prefix_titan.data.tokenizers import convert_llama3_tokenizer

        try:
            path = convert_llama3_tokenizer(a.out)
        except ImportError as e:
            p.error(str(e))
        print(f"tokenizer files in {path} (converted from the llama-models package)")
        return
    from prefix_titan.data.hub import exit_if_unreachable, offline_unless_reachable

    if unreachable := offline_unless_reachable():
        print(f"warning: {unreachable}", file=sys.stderr, flush=True)
    from huggingface_hub import snapshot_download

    offline = [
        f"python scripts/download_tokenizer.py --source llama-models --out {a.out}: the same "
        "tokenizer, converted from the llama-models PyPI package",
    ]
    with exit_if_unreachable(p, f"download the tokenizer of {a.repo_id}", offline):
        path = snapshot_download(
            repo_id=a.repo_id,
            allow_patterns=[
                "tokenizer.json",
                "tokenizer_config.json",
                "config.json",
                "generation_config.json",
            ],
            local_dir=a.out,
            token=a.token,
        )
    if unreachable:  # (huggingface_hub offline returns the folder as it is)
        print(
            f"nothing downloaded (the hub is unreachable): {path} holds tokenizer files from "
            "before, unchanged"
        )
        return
    print(f"tokenizer files in {path}")


if __name__ == "__main__":
    main()
