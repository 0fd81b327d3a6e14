"""Text a visitor typed, shown safely in the page's Markdown."""

from __future__ import annotations

import re

_MD_SPECIAL = re.compile(r"[\\`*_{}\[\]()<>#+!|~&-]")


def md(text: str) -> str:
    """Text shown literally in Markdown: a name typed by a visitor must not become a link or markup."""
    return _MD_SPECIAL.sub(r"\\\g<0>", text)
