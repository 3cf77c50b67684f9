"""Progress bars that suit where they are shown: redrawn ten times a second on a terminal, but
when stderr is a file or a CI log (no carriage-return redraw), one line every 10 seconds
instead of one per update."""

from __future__ import annotations

import sys
from typing import Any


def bar_options() -> dict[str, Any]:
    """Keyword arguments for ``tqdm(...)``: ``mininterval`` in seconds between redraws."""
    tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return {"mininterval": 0.1 if tty else 10.0, "dynamic_ncols": tty}
