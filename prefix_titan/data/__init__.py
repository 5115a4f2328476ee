"""The documents and tokens runs train on: the embedded corpus (corpus.py),
FineWeb-Edu's files (fineweb.py), token shards (shards.py) written by prepare (prepare.py), the
tokenizer files (tokenizers.py), and telling an unreachable hub apart (hub.py). torchtitan's
datasets over them are titan/datasets.py."""
