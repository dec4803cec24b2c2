"""Which user-facing entry points each resource can hurt: the graph that joins causes to outcomes.

Edges run from cause to effect and come from what discovery found: an API's Lambda
integrations (function -> API), a schedule's targets (function -> schedule), a queue's consumers
(function -> queue: a failing consumer is a backlog), a source queue's DLQ (queue -> DLQ), what a
function's environment names (database, proxy, table, SES -> function), a proxy's target database
(database -> proxy), the account's Lambda concurrency (account -> the functions holding most of
it, from the collector's `concurrency_holders` fact), and explicit wiring from the configuration.
A resource that reaches no entry point that way reaches the entry points sharing its `service`
tag in its account and region.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from detectors.base import Resource

# Where users feel a problem: requests that fail, jobs that do not run, mail not delivered.
ENTRY_KINDS = frozenset({"api", "schedule", "sqs", "ses"})
HOLDER_SHARE = 0.1  # of the concurrency the account's top functions hold between them


class Topology:
    def __init__(self, resources: Sequence[Resource], wiring: Iterable[tuple[str, str]] = ()) -> None:
        self.resources = {r.id: r for r in resources}
        self.edges: dict[str, set[str]] = {}
        place: dict[tuple[str, str, str, str], str] = {}  # (account, region, kind, name) -> id
        by_name: dict[str, list[str]] = {}
        for r in resources:
            place[(r.account, r.region, r.kind, r.name)] = r.id
            by_name.setdefault(r.name, []).append(r.id)
            by_name.setdefault(f"{r.kind}:{r.name}", []).append(r.id)

        def local(r: Resource, kind: str, name: str) -> str | None:
            return place.get((r.account, r.region, kind, name))

        for r in resources:
            if r.kind == "api":
                for fn in r.facts.get("functions") or []:
                    self._link(local(r, "lambda", fn), r.id)
            elif r.kind == "schedule":
                for fn in r.facts.get("target_functions") or []:
                    self._link(local(r, "lambda", fn), r.id)
            elif r.kind == "sqs":
                for fn in r.facts.get("consumers") or []:
                    self._link(local(r, "lambda", fn), r.id)
                # A source queue's failing consumer fills its DLQ: one problem (RedrivePolicy).
                if r.facts.get("dlq"):
                    self._link(r.id, local(r, "sqs", r.facts["dlq"]))
            elif r.kind == "lambda":
                for ref in r.facts.get("uses") or []:
                    kind, _, name = ref.partition(":")
                    self._link(local(r, kind, name), r.id)
            elif r.kind == "rds_proxy":
                # A proxy's target database: its callers use the database through it.
                for db in r.facts.get("targets") or []:
                    self._link(local(r, "rds", db), r.id)
            elif r.kind == "lambda_account":
                for fn in self._holders(r, [o for o in resources if o.kind == "lambda"]):
                    self._link(r.id, local(r, "lambda", fn))
        for cause, effect in wiring:
            for c in by_name.get(cause, []):
                for e in by_name.get(effect, []):
                    self._link(c, e)
        self._cache: dict[str, tuple[str, ...]] = {}

    @staticmethod
    def _holders(account: Resource, functions: list[Resource]) -> list[str]:
        """The functions an account's concurrency problem reaches users through: those holding
        the most of it now (facts from the collector: ConcurrentExecutions, Maximum), else those
        that draw on the unreserved pool (a function with reserved concurrency has its own —
        "Managing Lambda reserved concurrency",
        docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html) — never simply every function."""
        holders = account.facts.get("concurrency_holders")
        if holders is not None:
            named = [h for h in holders if isinstance(h, dict) and h.get("name")]
            # Only those holding a real share: the fifth-busiest function at 3 concurrent is not
            # how an account at its limit reaches users, and joining through it would fold an
            # unrelated problem on its queue into the account's incident.
            total = sum(float(h.get("peak") or 0) for h in named)
            return [
                h["name"] for i, h in enumerate(named) if i == 0 or float(h.get("peak") or 0) >= HOLDER_SHARE * total
            ]
        return [
            f.name
            for f in functions
            if f.account == account.account and f.region == account.region and not f.facts.get("reserved_concurrency")
        ]

    def _link(self, cause: str | None, effect: str | None) -> None:
        if cause and effect and cause != effect:
            self.edges.setdefault(cause, set()).add(effect)

    def is_entry(self, resource_id: str) -> bool:
        r = self.resources.get(resource_id)
        return r is not None and r.kind in ENTRY_KINDS

    def entries(self, resource_id: str) -> tuple[str, ...]:
        """The entry points a problem on this resource can reach, nearest first (ties by id)."""
        if resource_id in self._cache:
            return self._cache[resource_id]
        hops = self._reached(resource_id)
        found = list(hops) or self._same_service(resource_id)
        out = tuple(sorted(found, key=lambda e: (hops.get(e, 99), e)))
        self._cache[resource_id] = out
        return out

    def served(self, resource_id: str) -> tuple[str, ...]:
        """The entry points this resource directly serves, by id: the APIs a function is
        integrated in, the queues it consumes, the schedules that target it. None further away (a
        database behind a function behind an API has not hurt that API until the API says so),
        none from a shared `service` tag, none for an account-wide resource."""
        r = self.resources.get(resource_id)
        if r is None or r.kind in ("lambda_account", "ses"):
            return ()
        return tuple(sorted(e for e in self.edges.get(resource_id, ()) if self.is_entry(e)))

    def _reached(self, resource_id: str) -> dict[str, int]:
        """Entry points reachable along the edges, with how many hops away."""
        hops: dict[str, int] = {}
        seen, queue = {resource_id}, deque([(resource_id, 0)])
        while queue:
            node, depth = queue.popleft()
            for nxt in sorted(self.edges.get(node, ())):
                if nxt in seen:
                    continue
                seen.add(nxt)
                if self.is_entry(nxt):
                    hops[nxt] = depth + 1
                queue.append((nxt, depth + 1))
        return hops

    def _same_service(self, resource_id: str) -> list[str]:
        r = self.resources.get(resource_id)
        service = r.tags.get("service") if r else None
        if not r or not service or r.kind in ENTRY_KINDS:
            return []
        return sorted(
            o.id
            for o in self.resources.values()
            if o.kind in ENTRY_KINDS
            and o.tags.get("service") == service
            and o.account == r.account
            and o.region == r.region
        )
