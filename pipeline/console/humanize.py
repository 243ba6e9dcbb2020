"""Words and numbers for people, the same in the terminal, the logs and the monitor: short, with units,
readable at a glance, and never shown larger or smaller than they are.

Every number is clamped first, so that whatever a peer sends, a label keeps its size.
"""

from __future__ import annotations

import difflib
import importlib
import sysconfig
import traceback
from collections.abc import Iterable
from pathlib import Path

#: The largest count shown as is; beyond it, "> 999 999 999 999 999".
MAX_COUNT = 10**15 - 1
#: The largest rate shown, messages per second.
MAX_RATE = 1e12
#: The longest duration shown, seconds (ten years).
MAX_SECONDS = 10 * 365 * 86400.0


def count(value: int) -> str:
    """An integer with thin thousands separators: 1 234 567; beyond MAX_COUNT, "> 999 999 999 999 999"."""
    if abs(value) > MAX_COUNT:
        return ("> " if value > 0 else "< -") + f"{MAX_COUNT:,}".replace(",", "\u2009")
    return f"{value:,}".replace(",", "\u2009")


def out_of(part: int, whole: int) -> str:
    """A count out of another, each as ``count`` shows it: "1/2" (busy workers of all)."""
    return f"{count(part)}/{count(whole)}"


def fill(value: int, limit: int) -> str:
    """A count out of its limit, "12/64", or the count alone where there is no limit (``limit`` 0 or less)."""
    return out_of(value, limit) if limit > 0 else count(value)


def counted(number: int, noun: str, plural: str = "") -> str:
    """``number`` and ``noun``, in the plural unless it is one: "1 message", "3 messages", "2 worker processes"."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def rate(value: float) -> str:
    """Messages per second: "0", "8.5/s", "120/s", "12.3k/s" (at most MAX_RATE)."""
    value = min(value, MAX_RATE)
    if value <= 0:
        return "0"
    if value < 10:
        return f"{value:.1f}/s"
    if value < 10_000:
        return f"{value:.0f}/s"
    if value < 10_000_000:
        return f"{value / 1e3:.1f}k/s"
    if value < 10_000_000_000:
        return f"{value / 1e6:.1f}M/s"
    return f"{value / 1e9:.1f}G/s"


def seconds(value: float) -> str:
    """A short duration, such as a message's processing time: "—", "<1 µs", "85 µs", "3.2 ms", "1.50 s"."""
    value = min(value, MAX_SECONDS)
    if value <= 0:
        return "—"
    if value < 1e-6:
        return "<1 µs"
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.2f} s"

#: Abbreviations of powers of 1000, for numbers too wide for their column.
_UNITS = ("k", "M", "G", "T", "P", "E")


def duration(value: float) -> str:
    """A long duration, such as a run's elapsed time or an ETA, to the nearest second: "12 s", "4 min 05 s",
    "2 h 07 min"."""
    whole = int(min(max(0.0, value), MAX_SECONDS) + 0.5)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def abbreviated(number: int) -> str:
    """``number`` in at most five characters, never shown larger than it is: 9999, 12.3k, 123k, 1.23M.

    A number is never cut to fit (60000 must not read 600…): it takes a unit and fewer digits.
    """
    if number < 10_000:
        return str(number)
    power = 1
    while power < len(_UNITS) and number >= 1000 ** (power + 1):
        power += 1
    base = 1000**power
    decimals = 2 if number < 10 * base else 1 if number < 100 * base else 0
    shown = number * 10**decimals // base  # integer arithmetic: truncated, 99,999 is 99.9k and not 100k
    whole, fraction = divmod(shown, 10**decimals)
    return f"{whole}.{fraction:0{decimals}d}{_UNITS[power - 1]}" if decimals else f"{whole}{_UNITS[power - 1]}"


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The one of ``choices`` that ``word`` was most likely meant to be: the same but for case first, then the longest
    that ``word`` begins with, a word of its own (``listen_address``: ``listen``, where spelling alone found
    ``gui_address``), else the closest in spelling; None if none is close."""
    choices = sorted(choices)
    same = [choice for choice in choices if choice.casefold() == word.casefold()]
    stems = sorted((choice for choice in choices if word.casefold().startswith(f"{choice.casefold()}_")), key=len)
    near = same or stems[-1:] or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return near[0] if near else None


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the nearest of ``choices``, else the list of valid choices (as ``listed`` shows it)."""
    choices = sorted(choices)
    near = nearest(word, choices)
    if near is not None:
        return f" (did you mean {quoted(near)}?)"
    return f" (expected one of: {listed(choices)})" if choices else ""


#: The longest name (a key, an option, a step's name) or quoted text that a line for people shows whole: a step's
#: name may be this long (config.traits.MAX_STEP_NAME_CHARS). A longer one, from a file or a command line, has its
#: middle cut (its two ends stay), so that a line quoting a few of them stays a few hundred characters.
MAX_QUOTED_CHARS = 200
#: The longest list of valid choices that a line for people shows whole (the run's ~30 options fit).
MAX_CHOICES_SHOWN = 600


def cut_short(text: str) -> str:
    """``text`` (a name, a path) as a line for people shows it: whole if it has at most
    MAX_QUOTED_CHARS characters, else its start and its end around a note of how many characters were cut."""
    return shorten(text, MAX_QUOTED_CHARS, " ")


def quoted(text: str) -> str:
    """``text`` as a line for people quotes it, ``repr(text)``, its middle cut as ``cut_short`` cuts it."""
    return repr(cut_short(text))


def listed(choices: Iterable[str]) -> str:
    """``choices`` joined by commas, as a line for people lists them: its middle cut beyond MAX_CHOICES_SHOWN
    characters."""
    return shorten(", ".join(choices), MAX_CHOICES_SHOWN, " ")


def error_text(error: BaseException) -> str:
    """``str(error)``, or what its ``__str__`` raised: a step's own exception class may be broken, and telling of its
    failure must not fail in turn (as ``traceback`` prints ``<exception str() failed>``)."""
    try:
        text = str(error)
    except KeyboardInterrupt:
        raise
    except BaseException as broken:  # the step's code, whatever it raises
        return f"<str() failed: {type(broken).__name__}>"
    return text


def utf8_bytes(text: str) -> bytes:
    """``text`` in UTF-8, each lone surrogate (a byte of a file's name that is not UTF-8, as Python reads it) written
    as repr writes it, ``\\udcff`` (a plain encode() raises on it)."""
    return text.encode("utf-8", "backslashreplace")


def utf8_text(text: str) -> str:
    """``text`` with each lone surrogate written as repr writes it (utf8_bytes): text that UTF-8 encodes, for a
    monitor's JSON, a graph export, a log file or a failure told in every mode alike."""
    return utf8_bytes(text).decode("utf-8")


def shorten(text: str, limit: int, apart: str = "\n") -> str:
    """``text`` if it has at most ``limit`` characters; else its start and its end, saying how much was cut (on a line
    of its own, or, with ``apart`` " ", within the line)."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 40) // 2
    return f"{text[:keep]}{cut_note(len(text) - 2 * keep, 'characters', apart)}{text[len(text) - keep:]}"


def cut_note(amount: int, unit: str, apart: str = "\n") -> str:
    """What stands between the start and the end of a text whose middle (``amount`` ``unit``) was cut."""
    return f"{apart}[... {amount} {unit} cut ...]{apart}"


def failure_place(error: BaseException) -> str:
    """`` (FILE, line N)``: where the import that raised ``error`` failed; "" when no such line is known.

    That is the deepest frame of the traceback outside the import machinery and, where there is one,
    outside Python's standard library and the installed packages: the line of the step's module that raised
    (``RATE = 1/0``, ``T = np.load("missing.npy")`` rather than numpy's own line, ``parser.parse_args()``
    rather than argparse's own ``sys.exit``), or the import, maybe files further down, of a module that is
    missing. A step module installed as a package itself: the deepest line of that package, not of one it
    calls. A SyntaxError's message names its file and line already; a step module that is not found at all
    has no such line.
    """
    if isinstance(error, SyntaxError):
        return ""
    # The first frame is the caller's, which tried the import.
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)[1:] if not _machinery(frame.filename)]
    beyond = [frame for frame in frames if not _standard_library(frame.filename)]
    own = [frame for frame in beyond if _installed(frame.filename) is None]
    if not own and beyond:  # the first installed package is the step's own: its line, not a library's it calls
        package = _installed(beyond[0].filename)
        own = [frame for frame in beyond if _installed(frame.filename) == package]
    frames = own or frames
    return f" ({_shown_path(frames[-1].filename)}, line {frames[-1].lineno})" if frames else ""


#: The folders installed packages live in.
_INSTALLED = ("site-packages", "dist-packages")


def _standard_library(filename: str) -> bool:
    """Whether ``filename`` is a module of Python's standard library (not an installed package beside it)."""
    path = Path(filename)
    return path.is_relative_to(sysconfig.get_paths()["stdlib"]) and _installed(filename) is None


def _installed(filename: str) -> Path | None:
    """The installed package (or module) ``filename`` belongs to: its path under site-packages; None if it is no
    installed package's."""
    parts = Path(filename).parts
    at = next((i for i, part in enumerate(parts) if part in _INSTALLED), None)
    return None if at is None else Path(*parts[:at + 2])


def _machinery(filename: str) -> bool:
    """Whether ``filename`` is Python's import machinery (frozen, or importlib's own files)."""
    return filename.startswith("<") or Path(filename).parent == Path(importlib.__file__).parent


def _shown_path(filename: str) -> str:
    """A file's path as the user would type it: relative to the working directory when it lies below it."""
    try:
        return str(Path(filename).relative_to(Path.cwd()))
    except ValueError:
        return filename
