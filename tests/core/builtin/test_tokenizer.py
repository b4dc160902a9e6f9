import pytest
from transformers import CLIPTokenizer

from persguard_core.builtin.tokenizer import build_clip_tokenizer, save_vocab_files

CORPUS = ["a photo of a red circle", "a photo of qzv blue square", "a photo of an empty beige background"] * 50


@pytest.fixture(scope="module")
def tokenizer():
    return build_clip_tokenizer(CORPUS, vocab_size=600, max_length=32)


@pytest.mark.parametrize("text", ["a photo of sks circle", "zebra in the jungle", "Ünïcode ☃ 12 x-ray!", "qqqqjjjj"])
def test_unseen_words_round_trip_without_unknown_tokens(tokenizer, text):
    ids = tokenizer(text).input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == text.lower().replace(" ", "")
    inner = ids[1:-1]
    assert tokenizer.unk_token_id not in inner


def test_common_words_are_single_tokens_and_rare_words_are_split(tokenizer):
    tokens = tokenizer.tokenize("a photo of sks circle")
    assert "photo</w>" in tokens and "circle</w>" in tokens
    assert "sks</w>" not in tokens


def test_saved_tokenizer_reloads_identically_also_from_vocab_files(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "full")
    save_vocab_files(tokenizer, tmp_path / "full")
    again = CLIPTokenizer.from_pretrained(tmp_path / "full")
    classic = CLIPTokenizer(vocab=str(tmp_path / "full/vocab.json"), merges=str(tmp_path / "full/merges.txt"))
    text = "a photo of qzv red circle"
    assert again(text).input_ids == tokenizer(text).input_ids == classic(text).input_ids
    assert again.model_max_length == 32


def test_same_corpus_gives_the_same_vocabulary_and_merges():
    a = build_clip_tokenizer(CORPUS, vocab_size=600)
    b = build_clip_tokenizer(CORPUS, vocab_size=600)
    assert a.get_vocab() == b.get_vocab()
    assert a.tokenize("a photo of qzv circle") == b.tokenize("a photo of qzv circle")
