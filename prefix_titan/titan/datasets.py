"""Datasets and dataloaders.

Registered into torchtitan's dataset registry (`torchtitan.hf_datasets.text_datasets.DATASETS`), so
`training.dataset` / `validation.dataset` can name them:
- `fineweb_edu_ascii` / `fineweb_edu_ascii_validation`: HuggingFaceFW/fineweb-edu, config
  sample-100BT (its `sample/100BT/*.parquet` files), streamed; every non-ASCII character removed,
  documents left empty skipped. The last data file (by name) is validation, the others training: a
  split by whole files stays disjoint however torchtitan and the DataLoader shard the stream
  (a `take`/`skip` split would not: `datasets` splits a skip among shards). Read through
  torchtitan's own `HuggingFaceTextDataset`.
- `embedded_docs` / `embedded_docs_validation`: the embedded corpus (see corpus.py), same filter,
  held-out whole documents. Read by `PackedTokenDataset`: the corpus is tokenized once in memory and
  cut into sequences of seq_len + 1 tokens whose order is a seeded permutation, dealt round-robin
  to the data-parallel ranks, so 2 ranks with local batch b see exactly the sequences that 1 rank
  with local batch 2b sees. Its position is saved in torchtitan's checkpoint.
- `fineweb_edu_ascii_tokens`: token shards written by `python -m prefix_titan.prepare` (the shard
  directory as `training.dataset_path` / `validation.dataset_path`; the training loader reads the
  `train` split, the validation loader the `validation` split), read the same way as the embedded
  corpus: arms with the same seed see the same tokens in the same order.

With `[data] document_mask = true` the token datasets also yield per-document RoPE `positions`
and ignore the one cross-document target after each EOS, for torchtitan's block_causal flavors
(which find document boundaries from EOS themselves).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from functools import partial

import numpy as np
import torch
from datasets import Dataset, load_dataset
from torch.distributed.checkpoint.stateful import Stateful
from torch.utils.data import IterableDataset, default_collate
from torchtitan.components.dataloader import ParallelAwareDataloader
from torchtitan.hf_datasets import DatasetConfig
from torchtitan.hf_datasets.text_datasets import DATASETS, HuggingFaceTextDataset
from torchtitan.tools.logging import logger

from ..data.corpus import ascii_only, embedded_split, has_text
from ..data.fineweb import (
    DATA_KINDS,
    FINEWEB_EDU,
    check_one_config,
    data_format,
    list_data_files,
    other_case_note,
    walk_folder,
)
from ..data.hub import explain
from ..data.shards import ShardedTokens
from ..data.tokenizers import SPECIAL_TEXT, older_encoding
from ..objectives.kernel import IGNORE_INDEX

EMBEDDED_DATASETS = {"embedded_docs": "train", "embedded_docs_validation": "validation"}
SHARD_DATASETS = ("fineweb_edu_ascii_tokens",)
TOKEN_DATASETS = (*EMBEDDED_DATASETS, *SHARD_DATASETS)
STREAMED_DATASETS = ("fineweb_edu_ascii", "fineweb_edu_ascii_validation")
"""FineWeb-Edu streamed and tokenized as it is read: the hub's sample, or a local folder"""


def _ascii_text(sample: dict) -> dict:
    return {"text": ascii_only(sample["text"])}


def offline_ways(setting: str = "training.dataset_path") -> list[str]:
    """How a streamed FineWeb-Edu is read without the hub, a line each (`setting`: the unset
    dataset_path)."""
    return [
        f"set {setting} to a local folder of FineWeb-Edu's files (parquet or JSONL)",
        "prepare token shards from one (python -m prefix_titan.prepare --source DIR ...) and "
        "train on fineweb_edu_ascii_tokens (docs/data.md)",
    ]


def fineweb_files(path: str) -> list[str]:
    """The data files of a streamed FineWeb-Edu: at least 2 (the last is validation)."""
    if os.path.isdir(path):
        files, others = walk_folder(path)
        if others:
            logger.warning(other_case_note("dataset_path", path, others))
        check_one_config(path, files, "dataset_path")  # a local copy of the hub's repository
    else:
        try:
            files = list_data_files(path)
        except Exception as e:
            if (message := explain(e, f"list the files of {path}", offline_ways())) is None:
                raise
            raise ValueError(str(message)) from None
    if len(files) < 2:
        raise ValueError(
            f"training.dataset_path {path!r} holds {len(files)} data files ({DATA_KINDS}): "
            "FineWeb-Edu needs at least 2, the last of which is held out for validation"
        )
    return files


def load_fineweb_edu_ascii(path: str, split: str):
    """Stream FineWeb-Edu (or a local folder in its schema), ASCII-filtered, empty documents dropped."""
    files = fineweb_files(path)
    files = files[-1:] if split == "validation" else files[:-1]
    formats = {data_format(f) for f in files}
    if len(formats) != 1:
        setting = "validation.dataset_path" if split == "validation" else "training.dataset_path"
        raise ValueError(
            f"{setting} {path!r}: its FineWeb-Edu files mix formats {sorted(formats)}, and the "
            "streamed dataset reads one: give a folder of one format, or prepare this one into "
            f"shards (python -m prefix_titan.prepare --source {path} ..., which reads a mixed "
            "folder) and train on them (training.dataset fineweb_edu_ascii_tokens)"
        )
    ds = load_dataset(formats.pop(), data_files=files, split="train", streaming=True)
    return ds.map(_ascii_text).filter(lambda s: has_text(s["text"]))


def load_embedded(path: str, split: str) -> Dataset:
    del path  # the embedded corpus lives in the Python installation
    return Dataset.from_dict({"text": embedded_split(split)})


def _text(sample: dict) -> str:
    return sample["text"]


def _shards_need_our_loader(path: str):
    raise ValueError(
        "fineweb_edu_ascii_tokens holds pre-tokenized shards, read by the prefix_llama3 TrainSpec's "
        'loader: set [model] name = "prefix_llama3"'
    )


def _divisors(n: int, shown: int = 8) -> str:
    """The numbers that divide `n`, the first `shown` of them (and n)."""
    found = [d for d in range(1, n + 1) if n % d == 0]
    if len(found) <= shown:
        return ", ".join(map(str, found))
    return ", ".join(map(str, found[:shown])) + f", ..., {n}"


def register_datasets() -> None:
    """Add our datasets to torchtitan's DATASETS (done once, by importing train_spec)."""
    for name, split in zip(STREAMED_DATASETS, ("train", "validation"), strict=True):
        DATASETS[name] = DatasetConfig(
            path=FINEWEB_EDU,
            loader=partial(load_fineweb_edu_ascii, split=split),
            sample_processor=_text,
        )
    for name, split in EMBEDDED_DATASETS.items():
        DATASETS[name] = DatasetConfig(
            path="embedded", loader=partial(load_embedded, split=split), sample_processor=_text
        )
    for name in SHARD_DATASETS:
        DATASETS[name] = DatasetConfig(
            path="", loader=_shards_need_our_loader, sample_processor=_text
        )


def pack_documents(docs, tokenizer) -> np.ndarray:
    """One token stream: BOS + document + EOS for each document, as torchtitan's loader encodes."""
    pieces = [tokenizer.encode(d, add_bos=True, add_eos=True) for d in docs]
    return np.fromiter((t for p in pieces for t in p), dtype=np.int64)


class PackedTokenDataset(IterableDataset, Stateful):
    """Sequences of seq_len + 1 tokens cut from one token stream; rank r reads every W-th of them.

    With a seed the order is a fresh permutation per epoch and the position is resumable; without
    one (validation) every pass reads the same sequences from the start.
    """

    def __init__(
        self,
        tokens,
        seq_len: int,
        dp_rank: int = 0,
        dp_world_size: int = 1,
        seed: int | None = 0,
        infinite: bool = True,
        document_eos: int | None = None,
        what: str = "the corpus",
        seq_setting: str = "training.seq_len",
    ):
        self.tokens = tokens  # 1-D int array or ShardedTokens
        self.document_eos = document_eos  # set: yield per-document positions, no cross-doc targets
        self.seq_len = seq_len
        self.num_sequences = len(tokens) // (seq_len + 1)
        self.per_rank = self.num_sequences // dp_world_size  # equal on every rank: no hangs
        if self.per_rank == 0:
            raise ValueError(
                f"{what} has {len(tokens)} tokens: too few for one sequence of "
                f"{seq_setting} + 1 = {seq_len + 1} tokens per data-parallel rank ({dp_world_size})"
            )
        self.dp_rank, self.dp_world_size = dp_rank, dp_world_size
        self.seed, self.infinite, self.what = seed, infinite, what
        self.epoch, self.position = 0, 0

    def _order(self, epoch: int) -> np.ndarray:
        if self.seed is None:  # fixed order (validation)
            order = np.arange(self.num_sequences)
        else:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_sequences)
        return order[self.dp_rank :: self.dp_world_size][: self.per_rank]

    def __iter__(self):
        if self.seed is None:
            self.epoch, self.position = 0, 0
        while True:
            order = self._order(self.epoch)
            while self.position < self.per_rank:
                start = int(order[self.position]) * (self.seq_len + 1)
                self.position += 1
                yield self._sample(
                    np.asarray(self.tokens[start : start + self.seq_len + 1], np.int64)
                )
            if not self.infinite:
                return
            self.epoch, self.position = self.epoch + 1, 0
            logger.warning(
                f"{self.what}: every one of its {self.per_rank:,} sequences per rank has been "
                f"read; epoch {self.epoch + 1} begins, the same sequences in another order"
            )

    def _sample(self, x: np.ndarray):
        inputs, labels = torch.from_numpy(x[:-1]), torch.from_numpy(x[1:].copy())
        if self.document_eos is None:
            return {"input": inputs}, labels
        after_eos = np.concatenate([[False], x[:-2] == self.document_eos])  # a document starts
        idx = np.arange(len(after_eos))
        positions = idx - np.maximum.accumulate(np.where(after_eos, idx, 0))
        labels[inputs == self.document_eos] = IGNORE_INDEX  # EOS -> next document's BOS
        return {"input": inputs, "positions": torch.from_numpy(positions)}, labels

    def state_dict(self):
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state_dict):
        self.epoch, self.position = state_dict["epoch"], state_dict["position"]


OUR_DATASETS = ("fineweb_edu_ascii", "fineweb_edu_ascii_validation", *TOKEN_DATASETS)


def check_dataset_name(name: str, setting: str) -> None:
    known = set(DATASETS) | set(OUR_DATASETS)
    if name.lower() not in known:
        raise ValueError(f"{setting} must be one of: {', '.join(sorted(known))}; got {name!r}")


def token_stream(
    name: str, path: str | None, split: str, tokenizer, dp_rank: int, dp_world_size: int
):
    """The token array of a token dataset: the embedded corpus (tokenized now) or shards on disk."""
    if name in EMBEDDED_DATASETS:
        tokens = pack_documents(embedded_split(EMBEDDED_DATASETS[name]), tokenizer)
    else:
        if not path:
            raise ValueError(
                f"{name} needs the shard directory as dataset_path "
                "(written by `python -m prefix_titan.prepare`)"
            )
        tokens = ShardedTokens(
            path, split, tokenizer, verify_rank=dp_rank, verify_world=dp_world_size
        )
        if tokens.manifest.get("special_text") != SPECIAL_TEXT:
            logger.warning(older_encoding(path))
    logger.info(f"{name} ({split}): {len(tokens):,} tokens")
    return tokens


def first_of_every_rank(error: Exception | None) -> Exception | None:
    """The lowest rank's error among every rank's (None where no rank has one), so that an error
    one rank alone finds (the damaged shard whose CRC it checks) is raised by every rank alike and
    said by rank 0; without torch.distributed, `error`. Every rank calls it at the same point."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return error
    messages: list = [None] * dist.get_world_size()
    dist.all_gather_object(messages, None if error is None else str(error))
    first = next((m for m in messages if m is not None), None)
    if first is None:
        return None
    return error if error is not None and str(error) == first else ValueError(first)


def build_dataset(
    name: str,
    path: str | None,
    tokenizer,
    seq_len: int,
    dp_rank: int,
    dp_world_size: int,
    seed: int | None,
    infinite: bool,
    setting: str,
    split: str,
    document_mask: bool = False,
):
    name = name.lower()
    check_dataset_name(name, setting)
    if name not in TOKEN_DATASETS:
        return HuggingFaceTextDataset(
            name, path, tokenizer, seq_len, dp_rank, dp_world_size, infinite
        )
    section = setting.split(".")[0]
    found = None
    try:
        tokens = token_stream(name, path, split, tokenizer, dp_rank, dp_world_size)
    except ValueError as e:
        found = e
    found = first_of_every_rank(found)  # (each rank checks a share of the shards' CRCs)
    if found is not None:  # the shards' own refusal: name the setting that points at them
        if not path or name in EMBEDDED_DATASETS or str(found).startswith(f"{section}."):
            raise found
        raise ValueError(f"{section}.dataset_path {path!r}: {found}") from None
    eos = tokenizer.eos_id if document_mask else None
    what = f"{setting} {name!r}" + (
        f" at {path!r}" if path and name not in EMBEDDED_DATASETS else ""
    )
    what += f" ({split} split)"
    return PackedTokenDataset(
        tokens, seq_len, dp_rank, dp_world_size, seed, infinite, eos, what, f"{section}.seq_len"
    )


def collate_with_labels(samples):
    """Batches whose model inputs also hold the labels: the fused head computes the loss (model/transformer.py).
    torchtitan passes every input_dict entry but "input" to the model as a keyword argument."""
    input_dict, labels = default_collate(samples)
    input_dict["labels"] = labels
    return input_dict, labels


def _loader(ds, dp_rank, dp_world_size, options, batch_size, job_config, drop_last=False):
    collate = {"collate_fn": collate_with_labels} if job_config.objective.fused_loss else {}
    return ParallelAwareDataloader(
        ds,
        dp_rank=dp_rank,
        dp_world_size=dp_world_size,
        **asdict(options),
        batch_size=batch_size,
        drop_last=drop_last,
        **collate,
    )


def build_prefix_dataloader(dp_world_size, dp_rank, tokenizer, job_config, infinite: bool = True):
    t = job_config.training
    seed = job_config.debug.seed if job_config.debug.seed is not None else 0
    ds = build_dataset(
        t.dataset,
        t.dataset_path,
        tokenizer,
        t.seq_len,
        dp_rank,
        dp_world_size,
        seed,
        infinite,
        "training.dataset",
        "train",
        job_config.data.document_mask,
    )
    held = getattr(ds, "per_rank", None)
    if held is not None and t.local_batch_size > held:
        raise ValueError(
            f"training.local_batch_size {t.local_batch_size:,} is more than {ds.what} holds per "
            f"data-parallel rank ({dp_world_size}): {held:,} sequences of training.seq_len + 1 = "
            f"{t.seq_len + 1} tokens, so every batch would read each of them "
            f"{t.local_batch_size / held:.2f} times. Set training.local_batch_size to at most "
            f"{held:,}"
            + ("" if t.dataset.lower() in EMBEDDED_DATASETS else ", or prepare more tokens")
        )
    return _loader(ds, dp_rank, dp_world_size, t.dataloader, t.local_batch_size, job_config)


def build_prefix_validation_dataloader(
    dp_world_size, dp_rank, tokenizer, job_config, infinite: bool = False
):
    """The validation loader: one pass over the validation split at most, whatever `infinite`
    torchtitan asks for (it asks for an endless one whenever validation.steps is set, which
    would read a small split's sequences twice in one validation and weigh them double)."""
    del infinite
    v = job_config.validation
    ds = build_dataset(
        v.dataset,
        v.dataset_path,
        tokenizer,
        v.seq_len,
        dp_rank,
        dp_world_size,
        None,
        False,
        "validation.dataset",
        "validation",
        job_config.data.document_mask,
    )
    if isinstance(ds, PackedTokenDataset) and ds.per_rank < v.local_batch_size:
        raise ValueError(
            f"validation.dataset {v.dataset!r} has {len(ds.tokens):,} tokens: {ds.per_rank} "
            f"sequence(s) of validation.seq_len + 1 = {v.seq_len + 1} tokens per data-parallel "
            f"rank ({dp_world_size}), fewer than one batch (validation.local_batch_size = "
            f"{v.local_batch_size}). Prepare more validation tokens (prepare reads 1 document "
            "in --val-every as validation, alongside training, up to --val-tokens: where the "
            "training budget --tokens stopped it first, raise --tokens or lower --val-every), or "
            "lower validation.local_batch_size or validation.seq_len"
        )
    # torchtitan averages the batches' mean losses: a short last batch would weigh its
    # sequences more than the others', so validation reads whole batches only.
    packed = isinstance(ds, PackedTokenDataset)  # (a streamed split: its last batch as it is)
    whole = ds.per_rank // v.local_batch_size * v.local_batch_size if packed else 0
    asked = v.steps * v.local_batch_size if v.steps != -1 else None
    if whole and (asked is None or asked > whole) and whole < ds.per_rank:
        asks = (
            f"validation.steps {v.steps} x validation.local_batch_size {v.local_batch_size} = "
            f"{asked} sequences per rank, and "
            if asked is not None
            else ""
        )
        logger.warning(
            f"{asks}validation.dataset {v.dataset!r} holds {ds.per_rank} sequences per rank: "
            f"each validation reads {whole} of them once ({whole // v.local_batch_size} steps), "
            f"in whole batches of validation.local_batch_size {v.local_batch_size} (a local "
            f"batch that divides {ds.per_rank} reads them all: {_divisors(ds.per_rank)})"
        )
    elif whole and asked is not None and asked > whole:
        logger.warning(
            f"validation.steps {v.steps} x validation.local_batch_size {v.local_batch_size} = "
            f"{asked} sequences per rank, and validation.dataset {v.dataset!r} holds "
            f"{ds.per_rank} per rank: each validation reads those {ds.per_rank} once"
        )
    return _loader(
        ds, dp_rank, dp_world_size, v.dataloader, v.local_batch_size, job_config, drop_last=packed
    )
