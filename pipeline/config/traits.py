"""Trait types for the values of a JSON config: strict about types and bounds, and saying in one
line, in the words of JSON, what they expected.

traitlets' own types are lenient where a config file should not be (``Int`` takes ``true`` and
``2.0``, ``Bool`` takes ``1``, ``Float`` takes ``NaN`` and infinities), and their messages name
Python types. The step keys (:mod:`pipeline.config.stepkeys`) and the run's settings use these instead.
"""

from __future__ import annotations

import ipaddress
import math
import numbers
import operator
import os
import re
import reprlib
import socket
import stat
import unicodedata
from typing import Any, NoReturn

from traitlets import Dict, Enum, Float, Int, TraitError, TraitType, Unicode

from pipeline.console.humanize import quoted

#: Longest duration, in seconds, that a seconds option takes. Thread waits overflow past about
#: 9.2e9 s (``threading.TIMEOUT_MAX``); a million seconds (11.6 days) is beyond any use and far below that.
MAX_SECONDS = 1e6

# Values in error messages: long strings and containers are cut (a config error is one short line).
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def shown(value: Any) -> str:
    """A value as an error message shows it: its repr, shortened."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an integer with more digits than Python converts to text (4300 by default)
        return f"an {type(value).__name__} too long to show"


def names_a_class(key: str) -> bool:
    """Whether traitlets reads ``key`` of a config as a class's section, not an option: it begins with a capital
    letter and not with ``_`` (traitlets' own rule, which a class or option named otherwise cannot escape)."""
    return bool(key) and key[0].upper() == key[0] and not key.startswith("_")


class ValueProblem(TraitError):
    """A value that a trait refuses; the message is the whole problem, fit for a one-line config error."""


def unencodable(text: str, path: bool = False) -> str | None:
    """The first character of ``text`` that cannot leave Python as bytes, or None: a lone surrogate (JSON's
    ``"\\ud800"``), which UTF-8 cannot encode (a socket address, a wire frame, a log file). With ``path``, one that
    no file name holds: a file name's byte that is not UTF-8 is a surrogate too (Python reads ``b'\\xff'`` as
    ``'\\udcff'``), which the file system takes back (os.fsencode)."""
    try:
        os.fsencode(text) if path else text.encode("utf-8")
    except UnicodeEncodeError as err:
        return text[err.start]
    return None


def check_encodable(text: str, expected: str, path: bool = False) -> str:
    """``text`` if it has no character that ``unencodable`` finds; else a ValueProblem "expected EXPECTED, got TEXT"
    naming that character (it passed every check, then crashed where it left: a thread of the run, os.open)."""
    char = unencodable(text, path)
    if char is None:
        return text
    holder = "neither a file name nor UTF-8 text" if path else "no UTF-8 text"
    raise ValueProblem(f"expected {expected}, got {shown(text)} ({char!r} is a lone surrogate, which {holder} "
                       "can hold)")


class JsonTrait(TraitType):
    """Mixin: a refused value raises a ValueProblem "expected INFO, got VALUE", INFO being ``info()``."""

    def error(self, obj: Any, value: Any, error: Exception | None = None, info: str | None = None) -> NoReturn:
        """Refuse ``value`` (traitlets calls this from ``validate``)."""
        raise ValueProblem(f"expected {info or self.info()}, got {shown(value)}")


class JsonInt(JsonTrait, Int):
    """An integer within optional bounds; ``true``, ``false`` and floats such as ``2.0`` are not integers."""

    def validate(self, obj: Any, value: Any) -> int:
        """The value, if it is an integer within the bounds (a numpy integer, which a dict made in Python may hold,
        as the int it is)."""
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            self.error(obj, value)
        number = operator.index(value)
        if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
            self.error(obj, value)
        return number

    def info(self) -> str:
        """"an integer", with its bounds."""
        if self.min is not None and self.max is not None:
            return f"an integer from {self.min} to {self.max}"
        if self.min is not None:
            return f"an integer >= {self.min}"
        return "an integer" if self.max is None else f"an integer <= {self.max}"


class QueueLimit(JsonInt):
    """A queue's length limit: an integer >= 1, or -1 for no limit."""

    #: The value that means "no limit".
    UNBOUNDED = -1

    def __init__(self, default_value: int, **kwargs: Any) -> None:
        super().__init__(default_value, min=1, **kwargs)

    def validate(self, obj: Any, value: Any) -> int:
        """The value, if it is a limit or UNBOUNDED."""
        if not isinstance(value, bool) and isinstance(value, numbers.Integral) and value == self.UNBOUNDED:
            return self.UNBOUNDED
        return super().validate(obj, value)

    def info(self) -> str:
        """The bounds, and the value for no limit."""
        return f"{super().info()}, or {self.UNBOUNDED} for unbounded"


class JsonBool(JsonTrait, TraitType):
    """``true`` or ``false``; not 0, 1 or a string."""

    default_value = False
    info_text = "true or false"

    def validate(self, obj: Any, value: Any) -> bool:
        """The value, if it is a boolean."""
        if not isinstance(value, bool):
            self.error(obj, value)
        return value


class JsonEnum(JsonTrait, Enum):
    """One of a few strings."""

    def info(self) -> str:
        """The choices, quoted."""
        return "one of " + ", ".join(map(repr, self.values or ()))


class JsonObject(JsonTrait, Dict):
    """A JSON object; ``info_text`` says what its values are."""

    def __init__(self, info_text: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.info_text = info_text

    def info(self) -> str:
        """What the object holds."""
        return self.info_text


class NonEmptyString(JsonTrait, TraitType):
    """A string with more than blanks in it, without its leading and trailing blanks, that UTF-8 encodes (a step's
    name, module and class reach sockets, frames and the monitor)."""

    default_value = ""
    info_text = "a non-empty string"

    def validate(self, obj: Any, value: Any) -> str:
        """The stripped string, if it is not blank and holds no lone surrogate."""
        if not isinstance(value, str) or not value.strip():
            self.error(obj, value)
        return check_encodable(value.strip(), self.info())


#: Characters of a step's name at most: what a monitor shows (gui/protocol.py MAX_NAME, which refused every message
#: of a run with a longer one) and what a remote worker's HELLO carries of it (a longer one could not join).
MAX_STEP_NAME_CHARS = 200
#: Unicode categories a step's name never holds: control characters (a newline broke the graph exports and the
#: report's table), format characters (a right-to-left override turned the rest of a log line around, a zero-width
#: space made two steps look alike) and line or paragraph separators (which some readers take for a newline).
_UNSEEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


class StepName(NonEmptyString):
    """A step's name: a non-empty string of at most MAX_STEP_NAME_CHARS characters, without commas (``next_steps``
    splits on them) nor characters that are not seen as themselves (_UNSEEN_CATEGORIES)."""

    info_text = "a step name"

    def validate(self, obj: Any, value: Any) -> str:
        """The stripped name, if it is short enough and holds neither a comma nor an unseen character."""
        name = super().validate(obj, value)
        if len(name) > MAX_STEP_NAME_CHARS or any(
                char == "," or unicodedata.category(char) in _UNSEEN_CATEGORIES for char in name):
            raise ValueProblem(f"expected a step name of at most {MAX_STEP_NAME_CHARS} characters, without commas, "
                               f"control, format or line-separator characters, got {shown(name)}")
        return name


class StepNames(JsonTrait, TraitType):
    """Names of steps, as a comma-separated string (``"A, B"``) or a list (``["A", "B"]``), each once.

    Empty parts of a string are left out (``"A,"`` is ``("A",)``); the value is a tuple.
    """

    default_value = ()
    info_text = "a comma-separated string or a list of step names"

    def validate(self, obj: Any, value: Any) -> tuple[str, ...]:
        """The names as a tuple, stripped, if each is a non-empty string named once."""
        if isinstance(value, str):
            names = tuple(name for name in (part.strip() for part in value.split(",")) if name)
        elif isinstance(value, (list, tuple)) and all(isinstance(name, str) and name.strip() for name in value):
            names = tuple(name.strip() for name in value)
        else:
            self.error(obj, value)
        repeated = next((name for i, name in enumerate(names) if name in names[:i]), None)
        if repeated is not None:
            # A repeated next step would get every message twice.
            raise ValueProblem(f"{repeated!r} is named twice (expected each step once)")
        return names


class FiniteFloat(Float):
    """A float that is a number: not NaN, not an infinity."""

    info_text = "a finite float"

    def validate(self, obj: Any, value: Any) -> float:
        """The value as a float, if it is finite and within the bounds."""
        try:
            value = super().validate(obj, value)
        except OverflowError:  # an integer too large for a float
            self.error(obj, value)
        if not math.isfinite(value):
            self.error(obj, value)
        return value


class Seconds(FiniteFloat):
    """A duration in seconds, finite, and at most MAX_SECONDS unless a lower maximum is given."""

    def __init__(self, default_value: float, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_SECONDS)
        super().__init__(default_value, **kwargs)


class OutputFile(Unicode):
    """The path of a file to write, or "" for none: not a folder nor a device or FIFO, in a folder that exists, and
    one the run may write (what open() in a step's init() would refuse once the run started, a failed step)."""

    def validate(self, obj: Any, value: Any) -> str:
        """The path, if a file can be created there; looked at only, never created (a check in a worker process must
        not race the step that writes it)."""
        path = super().validate(obj, value)
        if "\0" in path:
            raise ValueProblem(f"{shown(path)} holds a NUL character (expected the path of a file to write)")
        if path:
            _check_writable(path)
        return path


class InputFile(Unicode):
    """The path of a file a step reads: no step's output nor the dead-letter file may be it (config.outputs), which
    would empty it as the run starts. Whether it can be read is the step's check()."""


#: What an OutputFile must be, in each of its problems.
_FILE_TO_WRITE = "expected the path of a file to write"


def _check_writable(path: str) -> None:
    """A ValueProblem if no file can be written at ``path``, by what the file system says of it without writing."""
    check_encodable(path, "the path of a file to write", path=True)  # "\ud800" in JSON: os.open raised
    folder = os.path.dirname(path)
    if folder and os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueProblem(f"{shown(folder)} is not a folder ({_FILE_TO_WRITE} in a folder)")
    try:
        mode: int | None = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:  # a name too long, a folder on the way that may not be searched
        raise ValueProblem(f"{shown(path)}: {err.strerror} ({_FILE_TO_WRITE})") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise ValueProblem(f"{shown(path)} is a folder ({_FILE_TO_WRITE})")
    if mode is not None and not stat.S_ISREG(mode):  # the file is replaced: /dev/null must not be
        raise ValueProblem(f"{shown(path)} is not a regular file ({_FILE_TO_WRITE})")
    if folder and not os.path.isdir(folder):
        raise ValueProblem(f"the folder {shown(folder)} does not exist (expected a file in an existing folder)")
    where = folder or "."
    exists = mode is not None
    if exists and not os.access(path, os.W_OK):
        raise ValueProblem(f"{shown(path)} may not be written ({_FILE_TO_WRITE})")
    if not exists and not os.access(where, os.W_OK | os.X_OK):
        raise ValueProblem(f"no file may be created in the folder {shown(where)} ({_FILE_TO_WRITE})")
    if os.statvfs(where).f_flag & os.ST_RDONLY:
        raise ValueProblem(f"the folder {shown(where)} is on a read-only file system ({_FILE_TO_WRITE})")


#: ``tcp://HOST:PORT``: HOST a name, an IPv4 address, ``*`` or an IPv6 address in brackets.
_TCP = re.compile(r"tcp://(?P<host>\[[^\]]*\]|[^:/\[\]\s]+):(?P<port>[^:/\s]*)")
#: ``HOST:PORT`` without its ``tcp://`` (the way gui_address is written).
_BARE = re.compile(r"(\[[^\]]*\]|[^:/\[\]\s]+):\d+")
#: A host name (labels of letters, digits, '-' and '_', not starting with '-', joined by dots) or an IPv4 address.
_HOST = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?")
#: What an address of a remote worker's link must look like, in every message about one.
TCP_FORM = "tcp://HOST:PORT"


def check_tcp_address(value: str, listening: bool) -> str:
    """``value`` if it is a ``tcp://HOST:PORT`` that remote workers can reach; a ValueProblem otherwise.

    ``listening``: the run's Pipeline.listen, where HOST may be ``*`` (every IPv4 address); else a
    worker's --connect, which names the run's host. Port 0 (or ``*``) would make ZeroMQ pick a port
    that no worker is told: refused. An IPv6 address is written in brackets, ``tcp://[::1]:5570``.
    """
    expected = f"expected {TCP_FORM}"
    match = _TCP.fullmatch(value)
    if match is None:
        if _BARE.fullmatch(value):
            raise ValueProblem(f"{expected}, got {shown(value)} (did you mean {quoted('tcp://' + value)}?)")
        if "://" in value and not value.startswith("tcp://"):
            raise ValueProblem(f"{expected}, got {shown(value)} (remote workers connect over TCP)")
        raise ValueProblem(f"{expected}, such as tcp://head:5570, got {shown(value)}")
    host, port = match["host"], match["port"]
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            address = quoted(host[1:-1])
            raise ValueProblem(f"{expected}, got {shown(value)} ({address} is not an IPv6 address)") from None
    elif host != "*" and not _HOST.fullmatch(host):
        raise ValueProblem(f"{expected}, got {shown(value)} ({quoted(host)} is not a host name or address)")
    if host == "*" and not listening:
        raise ValueProblem(f"{expected} naming the run's host, got {shown(value)} ('*' is for Pipeline.listen)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        why = " (port 0 would pick a port that no worker is told)" if port in ("0", "*") else ""
        raise ValueProblem(f"{expected} with a PORT from 1 to 65535, got {shown(value)}{why}")
    return value


def tcp_host(address: str) -> str:
    """The HOST of a ``tcp://HOST:PORT`` that check_tcp_address accepted, an IPv6 address without its brackets."""
    return tcp_parts(address)[0]


def tcp_parts(address: str) -> tuple[str, int]:
    """The HOST (an IPv6 address without its brackets) and PORT of a ``tcp://HOST:PORT`` that check_tcp_address
    accepted; ("", 0) for one it did not, and PORT 0 for ``*``."""
    match = _TCP.fullmatch(address)
    if match is None:
        return "", 0
    return match["host"].strip("[]"), int(match["port"]) if match["port"].isdigit() else 0


def unresolved(host: str) -> str | None:
    """Why the host name ``host`` stands for no address, in the resolver's words; None when it resolves, is an
    address or ``*``, or when the resolver cannot tell now (a name server that does not answer: libzmq asks
    again as it connects)."""
    if host == "*":
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        return err.strerror if err.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) else None
    except UnicodeError:  # a label the IDNA codec cannot encode: no resolver would take it
        return "not a name a resolver takes"
    return None


def loopback_only(host: str) -> list[str]:
    """The addresses of the host name ``host`` if every one is a loopback address, which only this host's processes
    reach (as /etc/hosts often makes a login node's own name); [] for an address, ``*``, ``localhost`` (loopback by
    its name), or a name with another address or none."""
    if host == "*" or host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return []
    try:
        ipaddress.ip_address(host)
        return []
    except ValueError:
        pass
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError):
        return []
    loopback = all(ipaddress.ip_address(each.split("%")[0]).is_loopback for each in found)  # "%": an IPv6 scope
    return sorted(found) if found and loopback else []


class ListenAddress(Unicode):
    """Where a run listens for remote workers: ``tcp://HOST:PORT``, or "" for nowhere."""

    def validate(self, obj: Any, value: Any) -> str:
        """The address, if workers can be told it."""
        address = super().validate(obj, value)
        return check_tcp_address(address, listening=True) if address else address
