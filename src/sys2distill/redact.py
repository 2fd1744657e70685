"""Recognise values that look like secrets (API keys, access tokens), so none reaches a file or a message.

A key belongs in an environment variable that ``backend.api_key_env`` names (issue 21): the
config refuses a value that looks like one (``config.RunConfig``), and every ``UserError``
message is passed through ``redact`` when it is made. Recognised: OpenAI-style ``sk-…`` and
Hugging Face ``hf_…`` tokens, and any long random-looking token — 24+ characters of a base64 or
URL-safe alphabet with upper case, lower case and digits, whose character class changes on at
least 45% of its letters and digits. Random base62/base64 tokens change class on ~60%; model and
file names on 20–42% (``NousResearch_Hermes-2-Pro-Llama-3-8B``: 41%). Lower-case hex (commit
and content hashes in Hub cache paths) is never flagged.
"""

from __future__ import annotations

import re

_PREFIXED = re.compile(r"(?<![A-Za-z0-9])(?:sk-|hf_)[A-Za-z0-9_\-]{16,}")
_TOKEN = re.compile(r"[A-Za-z0-9_\-+]{24,}=*")  # base64 pads with a trailing "="
MIN_CLASS_CHANGES = 0.45
REDACTED = "<redacted>"


def _random_looking(token: str) -> bool:
    classes = ["u" if c.isupper() else "l" if c.islower() else "d" for c in token if c.isalnum()]
    if not {"u", "l", "d"} <= set(classes):
        return False
    changes = sum(a != b for a, b in zip(classes, classes[1:]))
    return changes >= MIN_CLASS_CHANGES * (len(classes) - 1)


def _secrets(text: str) -> list[str]:
    return [m.group(0) for m in _PREFIXED.finditer(text)] + [t for t in _TOKEN.findall(text) if _random_looking(t)]


def looks_secret(text: str) -> bool:
    """Whether ``text`` holds something that looks like an API key or access token."""
    return bool(_secrets(text))


def redact(text: str) -> str:
    """``text`` with every secret-looking token replaced by ``<redacted>``."""
    for secret in sorted(set(_secrets(text)), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
