"""Generated connector logos: Pica's asset host is unreachable offline, so the sandbox draws its own."""

from __future__ import annotations

import colorsys
import hashlib
from functools import lru_cache
from html import escape


def _initials(name: str) -> str:
    words = [w for w in name.replace("-", " ").split() if w[:1].isalnum()]
    if len(words) >= 2:
        return (words[0][0] + words[1][0]).upper()
    return (words[0][:2] if words else "?").capitalize()


@lru_cache(maxsize=512)
def logo_svg(platform: str, name: str) -> bytes:
    digest = hashlib.sha256(platform.encode()).digest()
    hue = digest[0] / 255
    r, g, b = colorsys.hls_to_rgb(hue, 0.42, 0.55)
    color = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
    text = escape(_initials(name))
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
        f'<rect width="64" height="64" rx="14" fill="{color}"/>'
        f'<text x="32" y="41" font-family="Helvetica,Arial,sans-serif" font-size="24" font-weight="700" '
        f'fill="#ffffff" text-anchor="middle">{text}</text></svg>'
    ).encode()
