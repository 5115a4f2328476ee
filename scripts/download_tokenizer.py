"""Download the Llama-3 tokenizer files (tokenizer.json, tokenizer_config.json) for the sweep.

huggingface-cli login          # the Meta Llama repositories are gated: accept the licence first
python scripts/download_tokenizer.py [--repo-id meta-llama/Llama-3.1-8B] [--out assets/hf/Llama-3.1-8B]
"""

from __future__ import annotations

import argparse


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repo-id", default="meta-llama/Llama-3.1-8B")
    p.add_argument("--out", default="assets/hf/Llama-3.1-8B")
    p.add_argument("--token", default=None, help="HF access token (default: the logged-in one)")
    a = p.parse_args()
    from huggingface_hub import snapshot_download

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
    print(f"tokenizer files in {path}")


if __name__ == "__main__":
    main()
