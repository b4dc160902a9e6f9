"""Build a CLIP-format BPE tokenizer offline from toy-world captions.

The vocabulary holds every byte symbol with and without the end-of-word suffix "</w>", so any word,
seen in training or not, tokenizes without an unknown token; the learned merges make common words single
tokens. Merges are learned by a small deterministic greedy BPE (the same corpus always gives the same
vocabulary). The result is a stock `transformers.CLIPTokenizer`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE
from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _clip_like_tokenizer() -> Tokenizer:
    """An empty BPE tokenizer with CLIP's normalizer and pre-tokenizer."""
    tok = Tokenizer(BPE(continuing_subword_prefix="", end_of_word_suffix="</w>", unk_token=EOS))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    return tok


def _word_counts(corpus: Iterable[str]) -> Counter[tuple[str, ...]]:
    """Words of the corpus after CLIP's normalization and byte-level split, as symbol tuples ending in </w>."""
    tok = _clip_like_tokenizer()
    counts: Counter[tuple[str, ...]] = Counter()
    for text in corpus:
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)):
            counts[(*word[:-1], word[-1] + "</w>")] += 1
    return counts


def learn_merges(counts: Counter[tuple[str, ...]], n_merges: int) -> list[tuple[str, str]]:
    """Greedy BPE: repeatedly merge the most frequent adjacent pair (ties: the lexicographically smallest)."""
    words = dict(counts)
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        words = {_merge(word, best): n for word, n in words.items()}
    return merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def build_clip_tokenizer(corpus: Iterable[str], vocab_size: int = 1024, max_length: int = 32) -> CLIPTokenizer:
    """Learn BPE merges on `corpus` (deterministically) and return a CLIPTokenizer padding to `max_length`.

    Vocabulary in CLIP's order: the 256 byte symbols, the same with "</w>", one token per merge, then the
    start and end tokens.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = learn_merges(_word_counts(corpus), max(0, vocab_size - 2 * len(alphabet) - 2))
    tokens = alphabet + [a + "</w>" for a in alphabet] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def save_vocab_files(tokenizer: CLIPTokenizer, out_dir: Path) -> None:
    """Also write CLIP's classic `vocab.json` and `merges.txt`, for stacks that read only those."""
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    (out_dir / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    lines = ["#version: 0.2"] + [" ".join(m) for m in model["merges"]]
    (out_dir / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
