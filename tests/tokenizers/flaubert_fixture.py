"""Tiny FlauBERT tokenizer folders for tests, built on the spot (no network, no hub).

`build_flaubert_tokenizer_folder(folder)` learns a few hundred BPE merges on the Moses words of
`tests/data/french.txt` + `multilingual.txt` and writes vocab.json + merges.txt in FlauBERT's layout
(<s>=0 </s>=1 <pad>=2 <unk>=3 <special0..9>=4..13, then pieces), loadable by textbatch and transformers.
Some characters and merged pieces are left out of the vocabulary on purpose, so unknown pieces occur.
Other tests (models, jobs) can call it on their own `tmp_path`; it takes well under a second.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
SPECIALS = ["<s>", "</s>", "<pad>", "<unk>"] + [f"<special{i}>" for i in range(10)]


def read_lines(name: str) -> list[str]:
    """One text per line; split on "\\n" only, so U+0085, U+2028 and "\\r" stay inside lines."""
    return (DATA / name).read_bytes().decode("utf-8").split("\n")[:-1]


def _word_counts(lines: list[str]) -> collections.Counter:
    from textbatch.tokenizers.moses_bpe import MosesPreTokenizer

    moses = MosesPreTokenizer("fr")
    counts: collections.Counter = collections.Counter()
    for line in lines:
        for variant in (line, line.lower()):  # uncased checkpoints see lower-cased words
            counts.update(word for word in moses.words(moses.normalize(variant)) if word)
    return counts


def learn_merges(counts: collections.Counter, n_merges: int) -> list[tuple[str, str, int]]:
    """Greedy BPE over `</w>`-marked words: most frequent adjacent pair first, ties by the pair's text.

    Pair counts are updated only for the words a merge touches, which keeps this well under a second.
    """
    words = {word: tuple(word[:-1]) + (word[-1] + "</w>",) for word in counts}
    pairs: collections.Counter = collections.Counter()
    for word, symbols in words.items():
        for pair in zip(symbols, symbols[1:]):
            pairs[pair] += counts[word]
    merges = []
    for _ in range(n_merges):
        pairs += collections.Counter()  # drops pairs whose count fell to zero
        if not pairs:
            break
        (first, second), count = min(pairs.items(), key=lambda item: (-item[1], item[0]))
        merges.append((first, second, count))
        for word, symbols in words.items():
            if first not in symbols or (first, second) not in zip(symbols, symbols[1:]):
                continue
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] -= counts[word]
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            words[word] = symbols = tuple(merged)
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += counts[word]
    return merges


def build_flaubert_tokenizer_folder(
    folder: str | Path,
    n_merges: int = 600,
    do_lowercase: bool = False,
    missing_specials: tuple[str, ...] = (),
    model_max_length: int | None = 512,
) -> Path:
    """Write vocab.json, merges.txt and tokenizer_config.json into `folder` and return it.

    `missing_specials` leaves those special tokens out of vocab.json (the tokenizer then appends them).
    merges.txt carries counts as a third column, as FlauBERT's does, and one pair twice (the later rank counts).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    counts = _word_counts(read_lines("french.txt") + read_lines("multilingual.txt"))
    merges = learn_merges(counts, n_merges)

    char_counts = collections.Counter(char for word, count in counts.items() for char in word * count)
    characters = sorted(char_counts)
    pieces = [char for char in characters] + [char + "</w>" for char in characters]
    # Some rare characters stay unknown, and so do a few merged pieces.
    pieces = [piece for index, piece in enumerate(pieces) if char_counts[piece[0]] > 2 or index % 3]
    merged = [first + second for first, second, _ in merges]
    pieces += [piece for index, piece in enumerate(merged) if index % 23 != 11]  # and some merged pieces
    vocab: dict[str, int] = {}
    for token in [special for special in SPECIALS if special not in missing_specials] + pieces:
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1), encoding="utf-8")

    lines = [f"{first} {second} {count}" for first, second, count in merges]
    lines.append(lines[len(lines) // 3].rsplit(" ", 1)[0])  # a repeated pair, without count
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    config: dict = {"do_lowercase": do_lowercase}
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder
