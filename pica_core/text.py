"""Text from outside (Pica, platforms, users) made safe to show in Streamlit Markdown."""

from __future__ import annotations

import re
from urllib.parse import unquote

_MARKDOWN_SPECIALS = set("\\`*_{}[]()<>#+-.!|:$~=&^\"'")


# Streamlit draws `:material/name:` as an icon even when its colons are escaped: an invisible word joiner
# after the colon breaks the pattern without changing what is shown.
_ICON = re.compile(r"\\:(?=(material|streamlit|emoji)/)", re.IGNORECASE)
_WORD_JOINER = "\u2060"
# Unicode's direction embeddings, overrides and isolates: inside a value they turn the rest of the dashboard's
# sentence around ("…derongi") and can make one identity look like another. Right-to-left text needs none of them.
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_NO_BIDI = dict.fromkeys(map(ord, BIDI_CONTROLS))


def plain(text: object) -> str:
    """API text made inert for Streamlit Markdown: every punctuation character that Markdown, HTML, LaTeX or
    Streamlit's directives (`:red[…]`, `:smile:`) could act on is backslash-escaped (CommonMark renders an
    escaped ASCII punctuation character as itself), icon codes are broken up, line breaks become spaces and
    direction overrides are dropped."""
    value = " ".join(str(text or "").translate(_NO_BIDI).split())
    escaped = "".join("\\" + ch if ch in _MARKDOWN_SPECIALS else ch for ch in value)
    return _ICON.sub(lambda m: m.group(0) + _WORD_JOINER, escaped)


SECRET_MASK = "****"


def scrub(text: str | None, secret: str | None) -> str | None:
    """`text` with every occurrence of the secret replaced by ****."""
    if text is None or not secret:
        return text
    return text.replace(secret, SECRET_MASK)


def scrub_spelt(text: str | None, secret: str | None) -> str | None:
    """`scrub`, and where percent-escapes spell the secret (a path typed as %73k_test_…, which reaches Pica as the
    key), the text decoded and masked. For a path or a message, never for code: decoding can unquote a shell's."""
    if text and secret and "%" in text and secret in unquote(text):
        text = unquote(text)
    return scrub(text, secret)


def count(number: int, noun: str, plural: str | None = None) -> str:
    """'1 page', '2 pages', '50,000 connections'."""
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"
