"""Overlapping windows over a text's tokens, so that a text longer than the model's window is tagged whole.

A text's tokens (without special tokens) are cut into windows of `window` tokens; each next window starts `window -
stride` tokens after the previous one, so consecutive windows share `stride` tokens, and the last window is the first
one that reaches the end. Each window is then framed with the model's special tokens (`<s> ... </s>`) and tagged on
its own. These are the windows transformers' fast tokenizers make with `return_overflowing_tokens=True, stride=...`
(what its token-classification pipeline uses for `stride`), so the results can be compared one to one.

Pure functions, no Ray, no JAX.
"""

from __future__ import annotations


def window_bounds(n_tokens: int, window: int, stride: int) -> list[tuple[int, int]]:
    """[start, stop) token ranges covering `n_tokens` tokens; none for a text without tokens."""
    if window < 1:
        raise ValueError(f"a window must hold at least one token, got {window}")
    if not 0 <= stride < window:
        raise ValueError(f"stride must be at least 0 and less than the window's {window} text tokens, got {stride}")
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < n_tokens:
        stop = min(start + window, n_tokens)
        bounds.append((start, stop))
        if stop == n_tokens:
            break
        start += window - stride
    return bounds


def special_frame(tokenizer) -> tuple[int, int]:
    """(special tokens before, after) the text's tokens when the tokenizer frames one sequence: (1, 1) for
    `<s> ... </s>`."""
    mask = tokenizer.get_special_tokens_mask([0, 0, 0])
    before = next(index for index, flag in enumerate(mask) if not flag)
    after = len(mask) - 3 - before
    if mask[before : before + 3] != [0, 0, 0] or after < 0:
        raise ValueError(f"{type(tokenizer).__name__} frames a sequence as {mask}: special tokens inside the text")
    return before, after
