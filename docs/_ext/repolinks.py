"""Links from the documentation to Markdown files of the repository outside ``docs/``.

On GitHub, ``[README](../README.md)`` opens the README. Sphinx builds only the pages under
``docs/``, so MyST takes such a link for a page it does not know and warns. This transform turns
each of them into a download link to the file, as MyST already does for the other files of the
repository that the pages link to (``configs/*.json``, ``algorithms/*.py``): the built site then
offers the file itself. A link to a missing page still warns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform


class RepositoryFileLinks(SphinxTransform):
    """Turn MyST links to Markdown files outside the source directory into download links."""

    default_priority = 100  # after MyST has made its pending references, before they are collected

    def apply(self, **kwargs: Any) -> None:
        srcdir = Path(self.env.srcdir)
        here = Path(self.env.doc2path(self.env.docname)).parent
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("reftype") != "myst" or node.get("refdomain") != "doc":
                continue
            docname = node["reftarget"]
            if docname in self.env.found_docs:
                continue
            for suffix in self.config.source_suffix:
                path = (srcdir / (docname + suffix)).resolve()
                if path.is_file() and srcdir.resolve() not in path.parents:
                    link = addnodes.download_reference(
                        refdomain=None, reftype="myst", refexplicit=node.get("refexplicit", False),
                        refdoc=node.get("refdoc", self.env.docname), reftarget=os.path.relpath(path, here),
                    )
                    link.extend(child.deepcopy() for child in node.children)
                    node.replace_self(link)
                    break


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_transform(RepositoryFileLinks)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
