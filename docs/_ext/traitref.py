"""A Sphinx directive that lists the options of configurable classes, read from their traits.

In a MyST page::

    ```{config-traits} pipeline.Pipeline algorithms.basic.*
    ```

Each argument is a class (``module.Class``) or every configurable class defined in a module
(``module.*``), in source order. Each class gets a section with its docstring's first paragraph
and a table of its own ``config=True`` traits, in source order: the option's name, its type (with
its bounds or choices), its default (as JSON, the form a config file uses) and its help text.
A ``HasTraits`` class that is not configurable, such as ``pipeline.config.stepkeys.StepKeys``, lists all
its own traits; a trait tagged ``key="..."`` is listed under that name, one tagged ``required=True``
has "required" for its default, and a type of ``pipeline.config.traits`` says in its own words what it takes.
Options inherited from a configurable base class are listed with that base, named in the section.
The tables are built when the documentation is, so they always match the code.

The extension also keeps traits out of autodoc's member lists (this directive documents them), and
gives traitlets classes the signature of their ``__init__``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.inspect import signature, stringify_signature
from traitlets import Bool, Dict, Enum, Float, HasTraits, Int, List, TraitType, Tuple, Undefined, Unicode
from traitlets.config import Configurable

from pipeline.config.traits import JsonTrait


def configurable_classes(spec: str) -> list[type[HasTraits]]:
    """The class ``module.Class``, or every configurable class that ``module.*`` defines, in source order."""
    module_name, _, name = spec.rpartition(".")
    module = importlib.import_module(module_name)
    if name != "*":
        cls = getattr(module, name)
        if not (isinstance(cls, type) and issubclass(cls, HasTraits)):
            raise ValueError(f"{spec} is not a traitlets HasTraits class")
        return [cls]
    return [
        value for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Configurable) and value.__module__ == module.__name__
    ]


def own_options(cls: type[HasTraits]) -> list[tuple[str, TraitType]]:
    """The options that ``cls`` itself defines, in source order, by the names a config file gives them.

    The options of a Configurable are its ``config=True`` traits; those of another HasTraits, all its traits.
    """
    own = cls.class_own_traits(config=True) if issubclass(cls, Configurable) else cls.class_own_traits()
    return [(own[name].metadata.get("key", name), own[name]) for name in vars(cls) if name in own]


def option_bases(cls: type[Configurable]) -> list[type[Configurable]]:
    """The base classes of ``cls`` that define options of their own, nearest first."""
    return [base for base in cls.__mro__[1:] if issubclass(base, Configurable) and own_options(base)]


def type_text(trait: TraitType) -> str:
    """What a trait accepts, in the words of a JSON config: its type, bounds or choices."""
    if isinstance(trait, Enum):
        return "one of " + ", ".join(json.dumps(value) for value in trait.values)
    if isinstance(trait, JsonTrait):
        return re.sub(r"^an? ", "", trait.info())
    for kind, word in ((Bool, "boolean"), (Int, "integer"), (Float, "number"), (Dict, "object"),
                       (List, "list"), (Tuple, "list")):
        if isinstance(trait, kind):
            bounds = [f"{sign} {limit}" for sign, limit in ((">=", getattr(trait, "min", None)),
                                                             ("<=", getattr(trait, "max", None)))
                      if limit is not None and not math.isinf(limit)]
            return " ".join([word, *bounds])
    if isinstance(trait, Unicode):
        # A subclass that says what it accepts (such as an address) keeps its own words.
        own_info = type(trait).info_text != Unicode.info_text
        return f"string: {trait.info_text}" if own_info else "string"
    return type(trait).__name__


def default_text(trait: TraitType) -> str:
    """The trait's default as JSON, or as Python when JSON cannot hold it; "required" if it has none."""
    if trait.metadata.get("required"):
        return "required"
    value = trait.default()
    if value is Undefined:
        return trait.default_value_repr()
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def inline(text: str) -> list[nodes.Node]:
    """Docstring or help text as nodes: text between double backquotes (reST literals) as code."""
    parts = re.split(r"``(.+?)``", " ".join(text.split()))
    return [nodes.literal(text=part) if i % 2 else nodes.Text(part) for i, part in enumerate(parts) if part]


def section_id(cls: type) -> str:
    """The HTML anchor of a class's section: ``options-classname``."""
    return nodes.make_id(f"options-{cls.__name__}")


def _table(header: tuple[str, ...], rows: list[tuple[list[nodes.Node], ...]]) -> nodes.table:
    """A docutils table with a header row; each cell holds a paragraph of inline nodes."""
    table = nodes.table(classes=["config-traits"])
    group = nodes.tgroup(cols=len(header))
    table += group
    group.extend(nodes.colspec(colwidth=width) for width in (20, 20, 15, 45))
    head, body = nodes.thead(), nodes.tbody()
    group += head
    group += body

    def row(cells: tuple[list[nodes.Node], ...]) -> nodes.row:
        line = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += nodes.paragraph("", "", *cell)
            line += entry
        return line

    head += row(tuple([nodes.Text(title)] for title in header))
    body.extend(row(cells) for cells in rows)
    return table


class ConfigTraits(SphinxDirective):
    """``config-traits SPEC ...``: a section per class with the table of its options."""

    required_arguments = 1
    optional_arguments = 100
    has_content = False

    def run(self) -> list[nodes.Node]:
        try:
            classes = [cls for spec in self.arguments for cls in configurable_classes(spec)]
        except (ImportError, AttributeError, ValueError) as err:
            raise self.error(f"config-traits: {err}") from err
        listed = set(classes)
        return [self.section(cls, listed) for cls in classes]

    def section(self, cls: type[HasTraits], listed: set[type]) -> nodes.section:
        """The section of one class: title, description, inherited options and the table."""
        anchor = section_id(cls)
        section = nodes.section(ids=[anchor], names=[anchor])
        section += nodes.title("", "", nodes.literal(text=cls.__name__))
        summary = (inspect.getdoc(cls) or "").split("\n\n")[0]
        intro = nodes.paragraph()
        intro += nodes.literal(text=f"{cls.__module__}.{cls.__qualname__}")
        if summary:
            intro += nodes.Text(": ")
            intro.extend(inline(summary))
        section += intro
        bases = option_bases(cls)
        if bases:
            also = nodes.paragraph("", "It also has the options of ")
            for i, base in enumerate(bases):
                also += nodes.Text(", " if i else "")
                name = nodes.literal(text=base.__name__)
                also += nodes.reference("", "", name, refid=section_id(base)) if base in listed else name
            also += nodes.Text(".")
            section += also
        options = own_options(cls)
        if not options:
            section += nodes.paragraph("", "No options of its own.")
            return section
        rows = [
            ([nodes.literal(text=name)], [nodes.Text(type_text(trait))], [nodes.literal(text=default_text(trait))],
             inline(trait.help or ""))
            for name, trait in options
        ]
        section += _table(("option", "type", "default", "meaning"), rows)
        return section


def skip_traits(app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """autodoc: leave traits out of the member lists (``config-traits`` tables document options)."""
    return True if isinstance(obj, TraitType) else None


def init_signature(app: Sphinx, what: str, name: str, obj: Any, options: Any, sig: str | None,
                   return_annotation: str | None) -> tuple[str, str | None] | None:
    """autodoc: a traitlets class's signature is that of its ``__init__``.

    Without this autodoc shows ``HasTraits.__new__``'s ``(*args, **kwargs)``.
    """
    if what in ("class", "exception") and isinstance(obj, type) and issubclass(obj, HasTraits):
        init = signature(obj.__init__, bound_method=True)
        return stringify_signature(init, show_return_annotation=False), return_annotation
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("config-traits", ConfigTraits)
    app.connect("autodoc-skip-member", skip_traits)
    app.connect("autodoc-process-signature", init_signature)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
