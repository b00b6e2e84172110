"""Sentencepiece unigram models read the way transformers' converted (Rust) tokenizers read them.

Two pieces any sentencepiece-unigram tokenizer (XLM-R, T5) can share: the model's precompiled charsmap normaliser,
applied per grapheme cluster with the reference's offset alignment, and the reference's float64 Viterbi, so that
near-ties break the way transformers breaks them (sentencepiece's own encoder sums scores in float32).
"""

from __future__ import annotations

import struct

import regex

METASPACE = "\u2581"  # "▁", sentencepiece's visible space
_GRAPHEME = regex.compile(r"\X")
# sentencepiece_model.proto enums
UNIGRAM = 1
PIECE_UNKNOWN, PIECE_CONTROL, PIECE_USER_DEFINED = 2, 3, 4
# The reference scores an unknown character as the worst piece minus this (sentencepiece's kUnkPenalty).
_UNKNOWN_PENALTY = 10.0


# ----------------------------------------------------------------------------------------------------------------------
# Normalisation: sentencepiece's precompiled charsmap
# ----------------------------------------------------------------------------------------------------------------------
def _unit_offset(unit: int) -> int:
    return (unit >> 10) << ((unit & (1 << 9)) >> 6)


class PrecompiledCharsmap:
    """The `precompiled_charsmap` of a sentencepiece model (a darts-clone double-array trie of replacements).

    Applied like the reference: each grapheme cluster shorter than 6 bytes is replaced whole by the value of the
    shortest trie key it starts with; otherwise, or when there is none, each character on its own. `normalize`
    returns the new text and, for each of its characters, the (start, end) characters of the input it came from,
    computed with the reference's alignment rules (so offsets match, quirks included).
    """

    def __init__(self, blob: bytes):
        if len(blob) < 4:
            raise ValueError("precompiled_charsmap is shorter than its 4-byte header")
        trie_size = int.from_bytes(blob[:4], "little")
        if trie_size % 4 or 4 + trie_size > len(blob):
            raise ValueError(f"precompiled_charsmap header says {trie_size} trie bytes but the blob has {len(blob)}")
        self._units = struct.unpack(f"<{trie_size // 4}I", blob[4 : 4 + trie_size])
        self._replacements = blob[4 + trie_size :]
        self._transform_cache: dict[str, str | None] = {}
        # Per character seen so far: is it a key itself (`_self`), does it begin some key (`_starts`)?
        self._known: set[str] = set()
        self._self: set[str] = set()
        self._starts: set[str] = set()

    def _walk(self, data: bytes) -> tuple[bool, int | None]:
        """Follow `data` through the trie: (every byte matched, value of the shortest key that is a prefix)."""
        units = self._units
        n_units = len(units)
        node = _unit_offset(units[0])
        for byte in data:
            if byte == 0:  # the reference's trie walk stops at NUL
                return False, None
            node ^= byte
            if node >= n_units:
                return False, None
            unit = units[node]
            if (unit & 0x800000FF) != byte:
                return False, None
            node ^= _unit_offset(unit)
            if (unit >> 8) & 1 and node < n_units:
                return True, units[node] & 0x7FFFFFFF
        return True, None

    def transform(self, chunk: str) -> str | None:
        """The replacement for the shortest key that `chunk` starts with, or None."""
        try:
            return self._transform_cache[chunk]
        except KeyError:
            pass
        _, value = self._walk(chunk.encode("utf-8"))
        result = None
        if value is not None:
            end = self._replacements.find(b"\0", value)
            result = self._replacements[value : end if end >= 0 else None].decode("utf-8", errors="replace")
        if len(self._transform_cache) > 100_000:
            self._transform_cache.clear()
        self._transform_cache[chunk] = result
        return result

    def _classify(self, chars: set[str]) -> None:
        for char in chars - self._known:
            matched, _ = self._walk(char.encode("utf-8"))
            if matched:
                self._starts.add(char)
                if self.transform(char) is not None:
                    self._self.add(char)
            self._known.add(char)

    def normalize(self, text: str) -> tuple[str, list[tuple[int, int]] | None]:
        """(normalized text, per normalized character its input span) — the span list is None when unchanged."""
        chars = set(text)
        if not chars <= self._known:
            self._classify(chars)
        graphemes = None
        if chars.isdisjoint(self._self):
            # Only a grapheme of several characters that begins with a key's first character can change.
            if chars.isdisjoint(self._starts):
                return text, None
            graphemes = _GRAPHEME.findall(text)
            if len(graphemes) == len(text):
                return text, None
        if graphemes is None:
            graphemes = _GRAPHEME.findall(text)
        # (character, change) pairs as the reference builds them: 0 replaces one input character, +1 inserts
        # one, -n replaces one and drops n more.
        changes: list[list] = []
        modified = False
        self_keys = self._self
        for grapheme in graphemes:
            if len(grapheme) == 1:
                if grapheme in self_keys:
                    modified = True
                    _replace(changes, grapheme, self.transform(grapheme))
                else:
                    changes.append([grapheme, 0])
                continue
            if len(grapheme.encode("utf-8")) < 6:
                replacement = self.transform(grapheme)
                if replacement is not None:
                    modified = True
                    _replace(changes, grapheme, replacement)
                    continue
            for char in grapheme:
                if char in self_keys:
                    modified = True
                    _replace(changes, char, self.transform(char))
                else:
                    changes.append([char, 0])
        if not modified:
            return text, None
        out_chars: list[str] = []
        spans: list[tuple[int, int]] = []
        consumed = 0  # input characters used up so far
        for char, change in changes:
            if change > 0:  # inserted: shares the span of the input character before it
                span = (consumed - 1, consumed) if consumed >= 1 else (0, 0)
            else:
                span = (consumed, consumed + 1)
                consumed += 1 - change
            out_chars.append(char)
            spans.append(span)
        return "".join(out_chars), spans


def _replace(changes: list[list], old: str, new: str) -> None:
    diff = len(new) - len(old)
    changes.extend([char, 0] for char in new)
    if diff > 0:
        for item in changes[-diff:]:
            item[1] = 1
    elif diff < 0 and changes:
        # Also when `new` is empty: the previous character then absorbs the removal (the reference's rule).
        changes[-1][1] += diff


# ----------------------------------------------------------------------------------------------------------------------
# Segmentation: unigram Viterbi
# ----------------------------------------------------------------------------------------------------------------------
class UnigramModel:
    """Best segmentation of a piece under per-piece log-probabilities, exactly as the reference computes it.

    Forward pass over character positions; at each start, candidate pieces in increasing length; a later candidate
    replaces the best path into its end only when strictly better (float64), so ties keep the earlier start. A
    character that starts no one-character piece may be an unknown token scored min_score - 10; runs of unknown
    tokens come out as one token.
    """

    def __init__(self, vocab: list[tuple[str, float]], unk_id: int, cache_size: int = 200_000):
        self.unk_id = unk_id
        # One dict piece -> id (a repeated piece keeps its last id, as in the reference) and scores by id: at
        # XLM-R's 250k pieces this is most of the tokenizer's memory, so nothing else duplicates it.
        self.piece_ids: dict[str, int] = {piece: index for index, (piece, _) in enumerate(vocab)}
        self._scores = [float(score) for _, score in vocab]
        self._unk_score = min(self._scores) - _UNKNOWN_PENALTY
        # Longest piece starting with each two characters (or being one character): bounds the inner loop.
        self._max_len: dict[str, int] = {}
        for piece in self.piece_ids:
            key = piece[:2]
            if self._max_len.get(key, 0) < len(piece):
                self._max_len[key] = len(piece)
        self._cache_size = cache_size
        self._cache: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def segment(self, piece: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(ids, lengths in characters) of the tokens of `piece`."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        result = self._viterbi(piece)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[piece] = result
        return result

    def _viterbi(self, text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        n = len(text)
        lookup = self.piece_ids
        scores = self._scores
        max_len = self._max_len
        unk_id = self.unk_id
        unk_score = self._unk_score
        best = [0.0] * (n + 1)
        start_of = [-1] * (n + 1)
        id_of = [0] * (n + 1)
        for start in range(n):
            base = best[start]
            has_single = False
            longest = max(max_len.get(text[start : start + 2], 0), 1 if text[start] in max_len else 0)
            for end in range(start + 1, min(n, start + longest) + 1):
                index = lookup.get(text[start:end])
                if index is None:
                    continue
                candidate = base + scores[index]
                if start_of[end] < 0 or candidate > best[end]:
                    best[end] = candidate
                    start_of[end] = start
                    id_of[end] = index
                if end == start + 1:
                    has_single = True
            if not has_single:
                end = start + 1
                candidate = base + unk_score
                if start_of[end] < 0 or candidate > best[end]:
                    best[end] = candidate
                    start_of[end] = start
                    id_of[end] = unk_id
        ids: list[int] = []
        lengths: list[int] = []
        unknown_run = 0
        end = n
        while end > 0:
            start = start_of[end]
            if id_of[end] == unk_id:
                unknown_run += end - start
            else:
                if unknown_run:
                    ids.append(unk_id)
                    lengths.append(unknown_run)
                    unknown_run = 0
                ids.append(id_of[end])
                lengths.append(end - start)
            end = start
        if unknown_run:
            ids.append(unk_id)
            lengths.append(unknown_run)
        ids.reverse()
        lengths.reverse()
        return tuple(ids), tuple(lengths)


def load_unigram_proto(data: bytes, where: str, family: str):
    """Parse a sentencepiece model file and check it is a unigram model; errors name `where`."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as error:  # protobuf raises its own DecodeError
        raise ValueError(f"{where} is not a sentencepiece model: {error}") from error
    if not proto.pieces:
        raise ValueError(f"{where} is not a sentencepiece model (it has no pieces)")
    if proto.trainer_spec.model_type != UNIGRAM:
        raise ValueError(
            f"{where} is a sentencepiece model of type {proto.trainer_spec.model_type}; {family} needs a unigram "
            "model (type 1)"
        )
    return proto
