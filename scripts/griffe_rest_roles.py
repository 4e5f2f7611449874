"""A griffe extension for the documentation site (mkdocs.yml): reST markup of our docstrings, as Markdown.

The package's docstrings are written for readers of the source and for Sphinx habits:
``:class:`~pkg.mod.Name```, ``:func:`name```, ``code`` in double backticks and paragraphs ending in
``::`` before an indented example. mkdocstrings renders Markdown, so roles become code spans
(``~`` keeps the last component, as in Sphinx) and ``::`` becomes ``:`` (the indented lines after it
are already a Markdown code block). Double backticks are a Markdown code span as they are.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const|ref):`(?P<tilde>~?)(?P<target>[^`]+)`")
_LITERAL_INTRO = re.compile(r"(?<=\S)::$", re.MULTILINE)
_ALONE_INTRO = re.compile(r"^(?P<indent>[ \t]*)::$", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    target = match.group("target")
    if "<" in target and target.endswith(">"):  # :ref:`text <target>`
        target = target.split("<", 1)[0].strip()
    elif match.group("tilde"):
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def markdown(text: str) -> str:
    """``text`` (a docstring) with its reST roles and literal-block markers turned into Markdown."""
    text = _ROLE.sub(_role, text)
    text = _ALONE_INTRO.sub("", text)
    return _LITERAL_INTRO.sub(":", text)


class RestRoles(griffe.Extension):
    """Rewrites every docstring once, when griffe has loaded the object."""

    def on_instance(self, **kwargs: Any) -> None:
        obj = kwargs.get("obj")
        docstring = getattr(obj, "docstring", None)
        if docstring is not None:
            docstring.value = markdown(docstring.value)
