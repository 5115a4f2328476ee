"""token_texts: a token's text is its text after another token (a SentencePiece word-start token
keeps its space), a byte-level BPE's texts are its tokens' bytes as before, and two ids of one
text are refused."""

import os

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from prefix_titan.objectives import ObjectiveSpec, build_target_table, prefix_sets, token_texts
from prefix_titan.objectives.table import anchor_id

CORPUS = (
    "A person is a person. Personal persons personalize their personality; the personal is "
    "interpersonal. Persons in person: personally, a personality.\n"
) * 20


def metaspace_bpe(vocab_size: int = 200) -> Tokenizer:
    """A SentencePiece-style BPE (Metaspace pre-tokenizer and decoder: `▁` starts a word)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "</s>"], show_progress=False
    )
    tok.train_from_iterator([CORPUS], trainer)
    return tok


def word_level(tokens: list[str], decoder) -> Tokenizer:
    """A tokenizer of exactly `tokens` (id = position) decoded by `decoder`."""
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token=tokens[0]))
    tok.decoder = decoder
    return tok


def test_a_word_start_token_keeps_its_space():
    tok = metaspace_bpe()
    vocab = tok.get_vocab()
    word, inside = vocab["▁person"], vocab["person"]
    assert tok.decode([word]) == tok.decode([inside]) == "person"  # decoded alone: one text
    texts = token_texts(tok)
    assert texts[word] == " person" and texts[inside] == "person"
    assert texts[vocab["<s>"]] is None and texts[vocab["</s>"]] is None  # special
    assert texts[vocab["▁"]] == " "  # empty alone; a space between words
    # The prefix set of " personal" holds " person", and not the mid-word "person".
    gold = texts.index(" personal")
    members = prefix_sets(texts)[gold]
    assert word in members and inside not in members and vocab["▁"] in members
    row = build_target_table(texts, ObjectiveSpec("prefix")).dense(torch.tensor([gold]))[0]
    assert float(row[word]) > 0 and float(row[inside]) == 0
    # Every text is a token's text in a decoded sequence: each word of the corpus, decoded, is
    # its tokens' texts joined.
    for line in ["A person is a person.", "Personal persons personalize their personality;"]:
        ids = tok.encode(line).ids
        assert "".join(texts[i] for i in ids).lstrip(" ") == tok.decode(ids) == line


def test_byte_level_texts_are_each_token_decoded_alone(embedded_tokenizer_dir):
    """A byte-level BPE's texts are those of each id decoded alone, for every id (the texts a
    run's recorded table digest was made from)."""
    tok = Tokenizer.from_file(os.path.join(embedded_tokenizer_dir, "tokenizer.json"))
    n = tok.get_vocab_size(with_added_tokens=True)
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    alone = tok.decode_batch([[i] for i in range(n)], skip_special_tokens=False)
    want = [t if i not in special and t and t.isascii() else None for i, t in enumerate(alone)]
    texts = token_texts(tok, n + 3)
    assert texts == want + [None] * 3
    assert sum(t is not None for t in texts) > 0.9 * n
    assert anchor_id(alone, special) is not None  # decoded after an anchor, not alone


def test_two_ids_of_one_text_are_refused():
    """An end-of-word suffix decoder: `x</w>` last in a sequence reads `x`, as `x` does."""
    tok = word_level(["[UNK]", "a", "x", "b", "x</w>"], decoders.BPEDecoder(suffix="</w>"))
    with pytest.raises(ValueError) as e:
        token_texts(tok)
    message = str(e.value)
    assert "token ids 2 ('x') and 4 ('x</w>') both decode to 'x'" in message
    assert "ambiguous" in message and "end-of-word suffix" in message


def test_a_decoder_that_rewrites_the_anchor_is_refused():
    """A decoder that does not decode a token after the anchor as the anchor, then the token."""
    tok = word_level(
        ["[UNK]", "a", "b"], decoders.Sequence([decoders.Fuse(), decoders.Replace("ab", "X")])
    )
    with pytest.raises(ValueError, match=r"decodes token id 1 \('a'\) followed by id 2 as 'X'"):
        token_texts(tok)
