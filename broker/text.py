"""People's free text (justifications, tickets, comments, names) shown to those who decide on it.

Stored and answered by the API verbatim; shown in the portal and in email through ``visible``, which
drops what a person cannot see or that changes how the rest reads: control characters (Unicode
category Cc: escape sequences, bells, backspaces) and format characters (Cf: right-to-left
overrides and other bidirectional controls, zero-width spaces and joiners, soft hyphens). Line
breaks of every kind become a plain newline and stay.

In plain-text email a newline inside a fact could start a line that looks like one of the broker's
own (``Ticket: ...``), so ``indented`` puts every line after the first in from the margin, where
the broker's lines never start.
"""

from __future__ import annotations

import unicodedata

CONTINUATION_INDENT = "    "

_HIDDEN = frozenset(("Cc", "Cf"))


def visible(text: object) -> str:
    """``text`` without Cc and Cf characters; every kind of line break (CR LF, CR, NEL, U+2028, ...) as "\\n"."""
    if text is None:
        return ""
    lines = str(text).splitlines()
    return "\n".join("".join(ch for ch in line if unicodedata.category(ch) not in _HIDDEN) for line in lines)


def indented(text: object, indent: str = CONTINUATION_INDENT) -> str:
    """Visible text with every line after the first indented: nothing in it starts at the margin."""
    first, *rest = visible(text).split("\n")
    return "\n".join([first, *(indent + line for line in rest)])
