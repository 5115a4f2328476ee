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


def test_a_byte_fallback_tokenizers_byte_tokens_have_no_text():
    """A Llama-2-style BPE with byte fallback: its byte tokens <0x0A>, <0x61>, ... stand in for
    characters the vocabulary lacks; an ASCII one decodes as the vocabulary's own token of that
    character does, so taking it as a text refused the tokenizer (training, even ce, and the
    probes). They have no text, as partial UTF-8 bytes."""
    import json

    from prefix_titan.objectives.table import TokenTextError, byte_fallback_ids

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    tok.decoder = decoders.Sequence([*steps, decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(
        vocab_size=150, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tok.train_from_iterator([CORPUS], trainer)
    saved = json.loads(tok.to_str())  # the byte tokens are entries of the vocabulary, as Llama-2's
    vocab = saved["model"]["vocab"]
    vocab.update({f"<0x{b:02X}>": len(vocab) + b for b in range(256)})
    tok = Tokenizer.from_str(json.dumps(saved))
    byte_ids = byte_fallback_ids(tok)
    assert len(byte_ids) == 256 and tok.token_to_id("<0x61>") in byte_ids
    texts = token_texts(tok)
    assert all(texts[i] is None for i in byte_ids)
    vocab = tok.get_vocab()
    assert texts[vocab["a"]] == "a" and texts[vocab["▁person"]] == " person"
    assert tok.decode([tok.token_to_id("<0x61>")]) == "a"  # what made two ids of one text
    # the same vocabulary without byte fallback keeps its tokens named <0x..> as any others
    assert byte_fallback_ids(metaspace_bpe()) == set()
    assert issubclass(TokenTextError, ValueError)


@pytest.mark.slow
def test_a_run_with_a_tokenizer_of_unreadable_texts_is_refused_naming_its_path(tmp_path):
    """A run whose tokenizer gives two ids one text ends with one line naming
    model.hf_assets_path, status 2, its folders removed (it was a traceback naming no setting)."""
    import json
    import subprocess
    import sys

    from helpers import ROOT
    from tokenizers import AddedToken

    folder = tmp_path / "tokenizer"
    os.makedirs(folder)
    tok = word_level(["[UNK]", "<s>", "</s>", "a", "x", "b", "x</w>"], decoders.BPEDecoder())
    tok.add_special_tokens([AddedToken("<s>", special=True), AddedToken("</s>", special=True)])
    tok.save(str(folder / "tokenizer.json"))
    config = {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    command = [sys.executable, "-m", "prefix_titan.train", "--job.config_file"]
    command += [str(ROOT / "train_configs" / "embedded_default.toml"), "--training.steps", "2"]
    command += ["--job.dump_folder", str(tmp_path / "run"), "--model.hf_assets_path", str(folder)]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert f"error: model.hf_assets_path '{folder}': token ids 4 ('x') and 6 ('x</w>')" in (
        out.stderr
    )
    assert not (tmp_path / "run").exists()
