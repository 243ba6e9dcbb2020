"""Words for people: the nearest valid name to a typo."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the nearest of ``choices``, else the list of valid choices."""
    choices = sorted(choices)
    near = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if near:
        return f" (did you mean {near[0]!r}?)"
    return f" (expected one of: {', '.join(choices)})" if choices else ""
