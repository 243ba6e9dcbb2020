"""Code-block languages that Pygments may not know, shown as plain text rather than warned about.

graph.md shows ``mermaid`` output (GitHub draws it; Sphinx shows its text) and ``dot`` output
(Pygments has a Graphviz lexer since 2.16; older versions show the text).
"""

from __future__ import annotations

from typing import Any

from pygments.lexers import get_lexer_by_name
from pygments.lexers.special import TextLexer
from pygments.util import ClassNotFound
from sphinx.application import Sphinx

LANGUAGES = ("mermaid", "dot")


def setup(app: Sphinx) -> dict[str, Any]:
    for language in LANGUAGES:
        try:
            get_lexer_by_name(language)
        except ClassNotFound:
            app.add_lexer(language, TextLexer)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
