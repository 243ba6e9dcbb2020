"""The types of the bench's command-line arguments, one-line refusals (exit status 2) where a value cannot serve."""

from __future__ import annotations

import argparse
import math


def positive(text: str) -> int:
    """An argument that must be an integer of at least 1 (argparse's words would name this function)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def seconds(text: str) -> float:
    """An argument that must be a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value
