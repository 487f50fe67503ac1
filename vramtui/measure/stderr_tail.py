"""A child's last stderr lines as a failure message quotes them: progress bars left out.

A library's progress bar (tqdm: "Loading weights:  50%|#####     | 18/36 [00:00<...]")
redraws itself with carriage returns, so the tail of a crashed child's stderr is mostly
the bar's frames. What a message quotes is what the child said: its other lines.
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# A bar's percentage and its bar ("50%|"), its count ("| 18/36 ["), or its clock ("[00:01<")
_PROGRESS = re.compile(
    r"\d{1,3}%\||\|\s*\d+(?:\.\d+)?[kMG]?/\d+(?:\.\d+)?[kMG]?\s*\[|\[\d+:\d{2}(?::\d{2})?<"
)


def is_progress(line: str) -> bool:
    return bool(_PROGRESS.search(line))


def last_lines(text: str, lines: int) -> str:
    """The last `lines` lines of `text` that are not a progress bar's frames, each as a
    terminal would leave it (the text after its last carriage return), blank ones dropped."""
    kept = []
    for raw in text.split("\n"):
        shown = _ANSI.sub("", raw).rstrip("\r").rsplit("\r", 1)[-1].strip()
        if shown and not is_progress(shown):
            kept.append(shown)
    return "\n".join(kept[-lines:]) if lines > 0 else ""
