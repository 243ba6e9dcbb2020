"""Steps for tests/test_child_components.py: steps that build configurable objects of a library
(here a stand-in for ctapipe's components) with ``parent=self``, and a step with its own check()."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from traitlets import Float, Int, List, Unicode
from traitlets.config import Configurable

from pipeline import Component


class Cleaner(Configurable):
    """A library's component, as ctapipe's are: a traitlets Configurable built by whoever uses it."""

    threshold = Float(5.0, help="A cut.").tag(config=True)


class StrictCleaner(Cleaner):
    """A subclass with an option of its own, as ctapipe's TailcutsImageCleaner is of ImageCleaner."""

    min_neighbors = Int(2, min=0, help="Neighbours a pixel needs.").tag(config=True)


class Clean(Component):
    """Stager: sends each number with the options its StrictCleaner child was given."""

    child_classes = (StrictCleaner,)

    def init(self) -> None:
        """Build the child: its options come from the config through ``parent=self``."""
        self.cleaner = StrictCleaner(parent=self)

    def run(self, n: int) -> dict[str, Any]:
        """The number and the child's options."""
        return {"n": n, "threshold": self.cleaner.threshold, "min_neighbors": self.cleaner.min_neighbors}


class Processor(Configurable):
    """A library's component that builds its own child, as ctapipe's ImageProcessor builds its cleaner."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cleaner = StrictCleaner(parent=self)


class Process(Component):
    """Stager: sends each number with the options of the cleaner that its Processor child built (a grandchild)."""

    child_classes = (Processor, StrictCleaner)

    def init(self) -> None:
        """Build the child, which builds the grandchild."""
        self.processor = Processor(parent=self)

    def run(self, n: int) -> dict[str, Any]:
        """The number and the grandchild's options."""
        cleaner = self.processor.cleaner
        return {"n": n, "threshold": cleaner.threshold, "min_neighbors": cleaner.min_neighbors}


class SubProcess(Process):
    """Process under another name: a step whose class has a base class with a section of its own (as ctapipe's
    ProcessImages has EventInput)."""


class Builder(Processor):
    """A component that, as a pipeline Component may, lists the class of the child it builds in child_classes."""

    child_classes = (StrictCleaner,)


class Build(Process):
    """Stager: Process whose child_classes lists its Processor only, the Builder listing the cleaner it builds."""

    child_classes = (Builder,)

    def init(self) -> None:
        """Build the child, which builds the grandchild."""
        self.processor = Builder(parent=self)


class CommaLess(Clean):
    """Clean whose one-item tuple lost its comma: the class itself."""

    child_classes = (StrictCleaner)  # the comma left out on purpose


class AnInstance(Clean):
    """Clean listing an instance of its child's class in place of the class."""

    child_classes = StrictCleaner()


class AText(Clean):
    """Clean listing a text beside its child's class."""

    child_classes = (StrictCleaner, "x")


class ATrait(Clean):
    """Clean with an option named child_classes, hiding Component's attribute."""

    child_classes = List(help="A list of names.").tag(config=True)


class CommaLessBuilder(Processor):
    """A child whose own child_classes lost its comma."""

    child_classes = (StrictCleaner)  # the comma left out on purpose


class BuildCommaLess(Process):
    """Process whose child lists its own child without the comma."""

    child_classes = (CommaLessBuilder,)


class ReadTable(Component):
    """Producer: yields the lines of a file; check() says before the run that the file is missing."""

    path = Unicode("", help="The file to read.").tag(config=True)
    exit_code = Int(-1, help="check() calls sys.exit() with it, as a library's own command-line checks may (-1: "
                             "no).").tag(config=True)

    def check(self) -> None:
        """The file must exist."""
        if self.exit_code >= 0:
            sys.exit(self.exit_code)
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"no such file {self.path!r} to read")

    def run(self) -> Any:
        """Each line."""
        yield from Path(self.path).read_text(encoding="utf-8").splitlines()


class Write(Component):
    """Consumer: writes each message as a JSON line to ``path``."""

    path = Unicode("", help="The file to write.").tag(config=True)

    def init(self) -> None:
        """Open the file."""
        self.file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 -- closed in finish()

    def run(self, msg: Any) -> None:
        """Write one line."""
        self.file.write(json.dumps(msg) + "\n")

    def finish(self) -> None:
        """Close the file."""
        self.file.close()
