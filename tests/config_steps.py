"""Steps for tests/test_config_errors.py and tests/test_cli.py."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import Any

from traitlets import Any as AnyTrait
from traitlets import Dict, Enum, Int, List, Set, Tuple, Unicode, Union

from pipeline import Component


class NotAComponent:
    """A class that a config may name but cannot run: it is not a Component."""


class RunWithoutMessage(Component):
    """A stager whose run() takes no message, as a producer's: it failed at every message."""

    def run(self) -> None:
        """Nothing to take."""


class RunNotAMethod(Component):
    """A step whose run is a number: it failed at every message."""

    run = 5


class AsyncRun(Component):
    """A stager whose run() is async def: each message failed as a coroutine that could not be pickled."""

    async def run(self, msg: Any) -> Any:
        """Never awaited."""
        return msg


class AsyncGenerator(Component):
    """A producer whose run() is an async generator: it failed as no iterable."""

    async def run(self) -> Any:
        """Never iterated."""
        yield 1


class RunWithMessage(Component):
    """A producer whose run() wants a message, as a stager's: it failed at its start."""

    def run(self, msg: Any) -> Any:
        """Nothing to give."""
        return msg


class StaticRun(Component):
    """A stager whose run() is a static method: it takes the message alone."""

    @staticmethod
    def run(msg: Any) -> Any:
        """Pass it on."""
        return msg


def _scaled(factor: int, msg: Any) -> Any:
    """The message times ``factor``."""
    return msg * factor


class PartialRun(Component):
    """A stager whose run is a functools.partial: no self is bound to it, as to a staticmethod."""

    run = functools.partial(_scaled, 1)


class CallableRun(Component):
    """A stager whose run is a callable object: no self is bound to it either."""

    class _Pass:
        def __call__(self, msg: Any) -> Any:
            return msg

    run = _Pass()


class lowercase(Component):  # the point: a class that traitlets cannot configure
    """A stager whose class name begins with a lowercase letter."""

    count = Int(1, help="Anything.").tag(config=True)

    def run(self, msg: Any) -> Any:
        """Pass it on."""
        return msg


class _Underscored(lowercase):
    """A stager whose class name begins with an underscore."""


class CapitalOption(Component):
    """A stager with an option whose name begins with a capital letter."""

    URL_count = Int(1, help="Anything.").tag(config=True)
    Factor = Int(1, help="Anything.").tag(config=True)

    def run(self, msg: Any) -> Any:
        """Pass it on."""
        return msg


def _hiding(name: str) -> type[Component]:
    """A stager with an option named ``name``, as an attribute of Component is."""
    return type(f"Hides_{name}", (CapitalOption,), {
        "__module__": __name__, "__doc__": f"A stager with an option named {name!r}, as an attribute of Component.",
        name: Int(1, help="Anything.").tag(config=True)})


#: The names of Component's attributes that the options of stagers Hides_NAME take.
HIDDEN = ("log", "config", "parent", "next_steps", "step_name", "shard", "send_msg")
globals().update({f"Hides_{name}": _hiding(name) for name in HIDDEN})


class ThreadNamer(Component):
    """Stager: replaces each message by the name of the thread that ran it."""

    def run(self, msg: Any) -> str:
        """Return the current thread's name."""
        return threading.current_thread().name


class FailOn(Component):
    """Stager: passes messages on, and raises on the message equal to ``value``."""

    value = Int(3, help="The message that makes run() raise.").tag(config=True)

    def run(self, msg: Any) -> Any:
        """Return the message, or raise ValueError on ``value``."""
        if msg == self.value:
            raise ValueError(f"bad message {msg!r}")
        return msg


class AppendName(Component):
    """Stager: appends ``>NAME`` (its step's name) to the message, as text, to show the path a message took."""

    def run(self, msg: Any) -> str:
        """Return the message with this step's name after it."""
        return f"{msg}>{self.step_name}"


class SendThenYield(Component):
    """Producer in the style of ctapipe's pipeline documentation: ``self.send_msg(x)``, then a bare ``yield``."""

    count = Int(5, help="How many numbers to send.").tag(config=True)

    def run(self) -> Iterator[None]:
        """Send each number, yielding nothing."""
        for number in range(self.count):
            self.send_msg(number)
            yield


class Untagged(Component):
    """Stager: passes messages on; its trait ``factor`` lacks .tag(config=True), as a newcomer's first one may."""

    factor = Int(2, help="Not an option: untagged.")

    def run(self, msg: Any) -> Any:
        """Pass the message on."""
        return msg


class Downloaded(Unicode):
    """A path that is downloaded while it is validated if it is a URL, as ctapipe's Path trait does: the download
    fails here (no network), with what Python's sockets raise."""

    def validate(self, obj: Any, value: Any) -> str:
        """The path, unless it is a URL (which cannot be downloaded)."""
        path = super().validate(obj, value)
        if "://" in path:
            raise ConnectionError(f"cannot download {path}:\nno network")
        return path


class Containers(Component):
    """Stager: passes messages on; options of container and union types, whose elements traitlets would take a
    JSON boolean for (as 1) where a number goes."""

    ids = List(Int(), default_value=[1], help="Numbers.").tag(config=True)
    either = Union([Int(), Unicode()], default_value=1, help="A number or a word.").tag(config=True)
    pair = Tuple(Int(), Int(), default_value=(1, 2), help="Two numbers.").tag(config=True)
    weights = Dict(value_trait=Int(), default_value={}, help="A number per name.").tag(config=True)
    level = Enum([0, 1, 2], default_value=0, help="A level among numbers.").tag(config=True)
    kinds = List(Enum(["alpha", "beta"]), default_value=[], help="Names among two.").tag(config=True)
    switch = Enum([True, False, "auto"], default_value="auto", help="A flag or a word.").tag(config=True)
    tags = List(Unicode(), default_value=[], help="Words.").tag(config=True)
    groups = List(List(Int()), default_value=[], help="Lists of numbers.").tag(config=True)
    names = Set(Unicode(), default_value=set(), help="Words, each once.").tag(config=True)
    sizes = List(Int(), default_value=[1, 2], minlen=2, help="At least two numbers.").tag(config=True)
    anything = AnyTrait(None, help="Any value.").tag(config=True)
    either_any = Union([Int(), AnyTrait()], default_value=0, help="A number, or anything else.").tag(config=True)
    download = Downloaded("", help="A file, downloaded if a URL names it.").tag(config=True)
    download_or_count = Union([Int(), Downloaded()], default_value=0, help="A number, or a file.").tag(config=True)

    def run(self, msg: Any) -> Any:
        """Pass the message on."""
        return msg
