import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def embedded_tokenizer_dir(tmp_path_factory):
    """The embedded default's byte-level BPE, trained the way scripts/train_tokenizer.py does."""
    from prefix_titan.tokenizer import train_embedded_tokenizer

    return train_embedded_tokenizer(str(tmp_path_factory.mktemp("embedded_tokenizer")))


@pytest.fixture(scope="session")
def bpe_texts(embedded_tokenizer_dir):
    """Decoded texts of a real BPE vocabulary (None for special / non-ASCII tokens)."""
    from tokenizers import Tokenizer

    from prefix_titan.targets import token_texts

    return token_texts(Tokenizer.from_file(os.path.join(embedded_tokenizer_dir, "tokenizer.json")))
