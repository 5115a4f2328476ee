"""Pre-tokenized token shards: the on-disk format that `prepare.py` writes and training reads.

A shard directory holds `manifest.json` and, per split (`train`, `validation`), flat token files
`{split}_{i:05d}.bin` (numpy memmap, uint16 when the vocabulary fits, else uint32), each document
written as BOS + tokens + EOS exactly as torchtitan's text loader encodes it. The manifest records
the source and its revision, the tokenizer's hash, counts, each shard's token count and CRC32, and
`sha256`: the SHA-256 of its own canonical content (manifest_sha256), so that an edited or damaged
manifest is refused. A manifest written before that field existed is read without that check (its
shards' sizes and CRC32s are still checked).
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib

import numpy as np

from ..runs.folder import read_json

MANIFEST = "manifest.json"
FORMAT = "prefix_titan.token_shards.v1"
SPLITS = ("train", "validation")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def tokenizer_hash(tokenizer) -> str:
    """sha256 of the tokenizer's serialized form (vocabulary, merges, special tokens)."""
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    return hashlib.sha256(tok.to_str().encode()).hexdigest()


def shard_name(split: str, index: int) -> str:
    return f"{split}_{index:05d}.bin"


def file_crc32(path: str, block: int = 1 << 24) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(block):
            crc = zlib.crc32(chunk, crc)
    return crc


def manifest_sha256(manifest: dict) -> str:
    """SHA-256 of a manifest's canonical JSON (sorted keys, compact), its `sha256` field left out,
    and its `local_files` (the source files' sizes and times, which a rerun checks): the digest
    names the data, so that one source prepared twice alike, its files copied or touched between,
    has one digest (a run records it, and a sweep compares its arms' digests)."""
    content = {k: v for k, v in manifest.items() if k not in ("sha256", "local_files")}
    return hashlib.sha256(
        json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


REPREPARE = (
    "run `python -m prefix_titan.prepare` again into a fresh --out "
    "(or restore the folder from a copy)"
)


def load_manifest(directory: str) -> dict:
    """The manifest of a finished shard directory, checked: it parses, its checksum matches its
    content, and it lists each split's shards by plain file name, no shard in both splits."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        raise ValueError(
            f"{directory!r} has no {MANIFEST}: not a finished shard directory "
            "(write one with `python -m prefix_titan.prepare`, which resumes an interrupted run)"
        )
    try:
        manifest = read_json(path, "the shard manifest", expect=dict)
    except ValueError as e:
        raise ValueError(f"{e}; {REPREPARE}") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    if "sha256" in manifest and manifest["sha256"] != manifest_sha256(manifest):
        raise ValueError(
            f"{path} was changed after prepare wrote it (its content no longer matches its "
            f"sha256): the shard list and counts cannot be trusted; {REPREPARE}"
        )
    names = {}
    for split in SPLITS:
        try:
            shards = manifest["splits"][split]["shards"]
            listed = [(sh["name"], sh["tokens"], sh["crc32"]) for sh in shards]
        except (KeyError, TypeError) as e:
            raise ValueError(
                f"{path} does not list the {split} shards ({type(e).__name__}: {e}): the "
                f"manifest is damaged; {REPREPARE}"
            ) from None
        for name, _, _ in listed:
            if (
                not isinstance(name, str)
                or os.path.basename(name) != name
                or name in ("", ".", "..")
            ):
                raise ValueError(
                    f"{path} lists {name!r} as a {split} shard: not a file of the shard "
                    f"directory; {REPREPARE}"
                )
            if name in names:
                raise ValueError(
                    f"{path} lists shard {name} in both {names[name]} and {split}: validation "
                    f"must be held out of training; {REPREPARE}"
                )
            names[name] = split
    return manifest


def tokenizer_mismatch(directory: str, manifest: dict, sha256: str, bos_id, eos_id) -> str | None:
    """Why the shards at `directory` (their `manifest`) do not fit the run's tokenizer (its
    tokenizer_hash `sha256`, its BOS and EOS ids): prepared with another tokenizer, or marking
    documents with other ids; None when they fit."""
    if manifest["tokenizer_sha256"] != sha256:
        return (
            f"{directory!r} was tokenized with a different tokenizer (sha256 "
            f"{manifest['tokenizer_sha256'][:12]}...) than this run's model.hf_assets_path "
            f"({sha256[:12]}...): prepare the shards with the run's tokenizer, or point "
            "model.hf_assets_path at the folder given to prepare's --tokenizer"
        )
    for key, value in (("bos_id", bos_id), ("eos_id", eos_id)):  # tokenizer_config.json's
        if key in manifest and manifest[key] != value:
            return (
                f"{directory!r} marks documents with {key} {manifest[key]}, but this run's "
                f"model.hf_assets_path gives {key} {value} (its "
                + (
                    "tokenizer_config.json differs from the one the shards were prepared with"
                    if value is not None
                    else "tokenizer_config.json is missing or names no "
                    + key.replace("_id", "_token")
                )
                + "): use the tokenizer folder the shards were prepared with, or prepare "
                "them again"
            )
    return None


class ShardedTokens:
    """One split's shards as a single read-only token array: `len(t)` and `t[a:b]` (int64)."""

    def __init__(
        self,
        directory: str,
        split: str,
        tokenizer=None,
        verify_rank: int = 0,
        verify_world: int = 1,
    ):
        if split not in SPLITS:
            raise ValueError(f"shard split must be one of {', '.join(SPLITS)}; got {split!r}")
        manifest = load_manifest(directory)
        if manifest.get("bos_id", 0) is None and manifest.get("eos_id", 0) is None:
            raise ValueError(
                f"{directory!r} was prepared with a tokenizer that has neither a BOS nor an EOS "
                "token: its documents run into each other with no token between them. Give the "
                "tokenizer a tokenizer_config.json naming them (bos_token, eos_token) and prepare "
                "again"
            )
        if tokenizer is not None:
            digest = tokenizer_hash(tokenizer)
            marks = all(hasattr(tokenizer, key) for key in ("bos_id", "eos_id"))
            if not marks and digest == manifest.get("tokenizer_sha256"):  # (else: another one)
                raise ValueError(
                    f"ShardedTokens(tokenizer=...) takes torchtitan's HuggingFaceTokenizer (its "
                    f"bos_id and eos_id are checked against the manifest's), or None to check "
                    f"nothing; got a {type(tokenizer).__name__}, which has no bos_id/eos_id"
                )
            ids = {key: getattr(tokenizer, key, None) for key in ("bos_id", "eos_id")}
            if why := tokenizer_mismatch(directory, manifest, digest, **ids):
                raise ValueError(why)
        dtype = np.dtype(manifest["dtype"])
        self.arrays, starts = [], [0]
        for i, shard in enumerate(manifest["splits"][split]["shards"]):
            path = os.path.join(directory, shard["name"])
            expected = shard["tokens"] * dtype.itemsize
            size = os.path.getsize(path) if os.path.exists(path) else -1
            if size != expected:
                raise ValueError(
                    f"shard {path} is truncated or missing: {size} bytes, the manifest says "
                    f"{expected} ({shard['tokens']} tokens); {REPREPARE}"
                )
            # Each rank checks the CRC of every verify_world-th shard: a full check, shared out.
            if i % verify_world == verify_rank and file_crc32(path) != shard["crc32"]:
                raise ValueError(
                    f"shard {path} is corrupt: its CRC32 differs from the manifest's; {REPREPARE}"
                )
            self.arrays.append(np.memmap(path, dtype=dtype, mode="r"))
            starts.append(starts[-1] + shard["tokens"])
        self.starts = np.array(starts, dtype=np.int64)
        self.manifest = manifest

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: slice) -> np.ndarray:
        start, stop, _ = index.indices(len(self))
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        pieces = []
        while start < stop:
            local = start - self.starts[first]
            take = min(stop - start, len(self.arrays[first]) - local)
            pieces.append(self.arrays[first][local : local + take])
            start, first = start + take, first + 1
        return np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, np.int64)
