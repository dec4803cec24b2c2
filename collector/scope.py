"""Which discovered resources fleetwatch watches: include / exclude filters on tags and names.

Excludes win over includes. Account-level resources (the SES account, Lambda account limits)
are always in scope: they are the limits everything else runs into.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

ALWAYS_IN_SCOPE = frozenset({"ses", "lambda_account"})


def _tag_matchers(entries: list[str]) -> list[tuple[str, str | None]]:
    out = []
    for entry in entries:
        key, sep, value = entry.partition("=")
        out.append((key.strip(), value.strip() if sep else None))
    return out


@dataclass(frozen=True)
class Scope:
    include_tags: tuple[tuple[str, str | None], ...] = ()
    exclude_tags: tuple[tuple[str, str | None], ...] = ()
    include_names: tuple[str, ...] = ()
    exclude_names: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: Any) -> Scope:
        return cls(
            tuple(_tag_matchers(cfg["scope.include_tags"])),
            tuple(_tag_matchers(cfg["scope.exclude_tags"])),
            tuple(cfg["scope.include_names"]),
            tuple(cfg["scope.exclude_names"]),
        )

    @staticmethod
    def _tagged(tags: dict[str, str], matchers: tuple[tuple[str, str | None], ...]) -> bool:
        return any(k in tags and (v is None or tags[k] == v) for k, v in matchers)

    def admits(self, kind: str, name: str, tags: dict[str, str]) -> bool:
        if kind in ALWAYS_IN_SCOPE:
            return True
        if self._tagged(tags, self.exclude_tags) or any(fnmatch.fnmatchcase(name, p) for p in self.exclude_names):
            return False
        if self.include_tags and not self._tagged(tags, self.include_tags):
            return False
        return not self.include_names or any(fnmatch.fnmatchcase(name, p) for p in self.include_names)
