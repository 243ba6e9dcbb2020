"""Sphinx configuration: the Markdown pages of docs/ (MyST), the API from docstrings, the options from traits.

Build the HTML documentation, from the repository root, with warnings as errors::

    python -m sphinx -W -b html docs build/html
"""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The project's packages (for autodoc and config-traits) and this directory's extensions.
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]

_metadata = configparser.ConfigParser()
_metadata.read(ROOT / "setup.cfg", encoding="utf-8")

project = _metadata["metadata"]["name"]
release = version = _metadata["metadata"]["version"]
author = "the zmq-pipeline developers"
copyright = f"{author}, BSD-3-Clause"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "traitref",  # docs/_ext/traitref.py: the config-traits directive
    "repolinks",  # docs/_ext/repolinks.py: links to Markdown files outside docs/ (the README)
    "lexers",  # docs/_ext/lexers.py: code-block languages Pygments does not know
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "build", "_ext"]

# GitHub's heading anchors, so that links such as cli.md#exit-status work in both places.
myst_heading_anchors = 4
# Option names (--replay) and quoted values ('threads') stay as typed, in the pages and the help texts.
smartquotes = False

autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}

html_theme = "alabaster"
html_title = f"{project} {release}"
html_theme_options = {"description": "Multi-step data pipelines on ZeroMQ", "page_width": "1100px"}
