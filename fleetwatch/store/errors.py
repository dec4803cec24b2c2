"""The exceptions every store backend raises: StoreError, and LockHeld when another agent holds the store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


class StoreError(Exception):
    """A store problem with a message an operator can act on."""


class LockHeld(Exception):
    """Another process holds the store; the message names it and says what to do."""

    def __init__(self, path: Path | str, holder: dict[str, Any], setting: str = "store.path") -> None:
        self.path, self.holder = path, holder
        since = holder.get("since")
        when = (
            time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(since))
            if isinstance(since, (int, float))
            else "an unknown time"
        )
        who = f"process {holder.get('pid', '?')} on {holder.get('host', '?')}"
        what = f" ({holder['command']})" if holder.get("command") else ""
        super().__init__(
            f"the store {str(path).removesuffix('.lock')} is in use "
            f"by {who}{what}, running since {when}. Only one agent may "
            f"run on a store: stop that one (kill {holder.get('pid', '<pid>')}), or give this one its own {setting}."
        )
