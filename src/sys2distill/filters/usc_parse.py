"""Reading the model's Universal Self-Consistency output (arXiv 2407.06023 Sec. 4.2).

A small model often ignores the requested format; a parse failure returns ``None`` and the
reason, which the ``usc`` filter records before retrying or falling back to majority voting.
"""

from __future__ import annotations

import re

from sys2distill.tasks.base import normalize

_FINAL = re.compile(r"FINAL(?: ANSWER)?\W{0,3}:\s*", re.I)
# Lazy \W*? leaves a minus sign to the number, so "Response -1" is out of range, not 1.
_INDEX = re.compile(r"most consistent response is\W*?(?:response\W*?)?(-?\d+)", re.I)
_BARE_INDEX = re.compile(r"\W*?(?:response\W*?)?(-?\d+)\W*", re.I)
_PLACEHOLDER = re.compile(r"\bresponse x\b", re.I)


def parse_final(text: str) -> tuple[str | None, str]:
    """The answer after the last "FINAL:" up to a blank line → (answer, "") or (None, why)."""
    hits = list(_FINAL.finditer(text))
    if not hits:
        return None, "no 'FINAL:' in output"
    answer = text[hits[-1].end():].split("\n\n")[0].strip(" \t\n\"'*")
    if answer.startswith("<") and answer.endswith(">"):
        answer = answer[1:-1].strip()
    if not answer or normalize(answer) == "your final answer":  # the prompt's placeholder echoed back
        return None, "empty answer after 'FINAL:'"
    return answer, ""


def parse_index(text: str, n: int) -> tuple[int | None, str]:
    """The selected response index (0-based) → (index, "") or (None, why).

    Only the requested phrase, or an output that is nothing but "Response 3"/"3", counts: the
    first number in a discussion of the responses is a guess, not a choice.
    """
    m = _INDEX.search(text) or _BARE_INDEX.fullmatch(text)
    if not m:  # small models often echo the prompt's placeholder: say so, it explains a 0% parse rate
        return None, "copied the placeholder 'Response X'" if _PLACEHOLDER.search(text) else "no response index in output"
    i = int(m.group(1))
    return (i, "") if 0 <= i < n else (None, f"index {i} out of range 0-{n - 1}")
