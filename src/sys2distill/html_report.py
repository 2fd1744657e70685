"""Markdown report → one self-contained HTML file: tables styled inline, plots embedded as data URIs.

A reader can mail or archive ``report.html`` alone: it references no file, font or script.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

from markdown_it import MarkdownIt

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.7em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
img { max-width: 640px; display: block; margin: 1em 0; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
"""


def _inline_images(body: str, base: Path) -> str:
    """Replace each ``<img src="relative/path">`` with the file's bytes as a data URI."""

    def embed(m: re.Match) -> str:
        src = html.unescape(m.group(2))
        path = base / src
        if src.startswith(("data:", "http:", "https:")) or not path.is_file():
            return m.group(0)  # left as is: the test of the HTML flags anything not embedded
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return f'{m.group(1)}data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}{m.group(3)}'

    return re.sub(r'(<img[^>]*\bsrc=")([^"]+)(")', embed, body)


def write_html(markdown: str, base: Path, path: Path, title: str) -> Path:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = _inline_images(md.render(markdown), base)
    path.write_text(f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                    f"<style>{CSS}</style></head><body>\n{body}</body></html>\n", encoding="utf-8")
    return path
