"""Imports run downward only, and nothing imports in a circle (docs/architecture.md).

    fleetwatch.cli      the commands                                  may import anything; the
                                                                      emulator only inside a command
    fleetwatch.agent    the agent loop, the detection pass, alerting wired from the configuration
    collector detectors alerts web        the domain: web may read alerts, detectors and the
                                          collector; alerts may read detectors' types and the
                                          collector's prices; collector and detectors read only
                                          the ground
    fleetwatch (config, store, clock, logs, telemetry, lock, serving)   the ground

The emulated fleet (simulator/, an optional extra) stands beside the product: it may reuse the
ground and the domain's pure helpers but never web, the agent or the CLI, and no product module
imports it at module level.

Every import counts, including those inside functions (a late import still ties two modules) and
those under `if TYPE_CHECKING:` (a type-only import still ties two modules' designs).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fleetwatch", "collector", "detectors", "alerts", "web", "simulator")

GROUND, DOMAIN, AGENT, CLI, TOOL = "ground", "domain", "agent", "cli", "simulator"
RANK = {GROUND: 0, DOMAIN: 1, AGENT: 2, CLI: 3}
# Within the domain, who may read whom (the data flows collector → store → detectors → alerts → web).
DOMAIN_READS = {
    "collector": set(),
    "detectors": set(),
    "alerts": {"detectors", "collector"},
    "web": {"alerts", "detectors", "collector"},
}


def layer(module: str) -> str:
    top = module.split(".")[0]
    if top == "simulator":
        return TOOL
    if top in DOMAIN_READS:
        return DOMAIN
    if module == "fleetwatch.cli" or module.startswith("fleetwatch.cli."):
        return CLI
    if module == "fleetwatch.agent" or module.startswith("fleetwatch.agent."):
        return AGENT
    return GROUND


def _imports(tree: ast.AST, in_function: bool = False) -> list[tuple[str, bool]]:
    """(imported module, whether the import is inside a function) for every import."""
    out: list[tuple[str, bool]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, in_function) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, in_function))
            # `from package import module` imports the module too.
            out += [(f"{node.module}.{a.name}", in_function) for a in node.names]
        out += _imports(node, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return out


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _graph() -> dict[str, list[tuple[str, bool]]]:
    graph: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for name, path in MODULES.items():
        for target, late in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if target in MODULES and target != name:
                graph[name].append((target, late))
    return graph


GRAPH = _graph()


def upward(source: str, target: str, late: bool) -> str | None:
    """Why source may not import target, or None when it may."""
    ls, lt = layer(source), layer(target)
    if ls == TOOL:
        if lt in (AGENT, CLI) or target.split(".")[0] == "web":
            return "the emulator stands beside the product and may not reach into web, the agent or the CLI"
        return None
    if lt == TOOL:
        if ls == CLI and late:
            return None
        return "the product may not import the emulator (an optional extra) except inside a CLI command"
    if RANK[lt] > RANK[ls]:
        return f"{ls} may not import {lt}"
    if ls == lt == DOMAIN:
        a, b = source.split(".")[0], target.split(".")[0]
        if a != b and b not in DOMAIN_READS[a]:
            return f"{a} may not import {b}"
    return None


def test_the_layers_cover_every_module() -> None:
    assert len(MODULES) > 80, "the scan found the packages"
    assert {layer(m) for m in MODULES} == {GROUND, DOMAIN, AGENT, CLI, TOOL}


def test_imports_run_downward_only() -> None:
    wrong = sorted(
        f"{s} imports {t}: {why}" for s, targets in GRAPH.items() for t, late in targets if (why := upward(s, t, late))
    )
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize(
    "source,target,late,allowed",
    [
        ("fleetwatch.store.db", "alerts.store", False, False),
        ("fleetwatch.config.settings", "detectors.base", True, False),
        ("detectors.tables", "collector.catalog", False, False),
        ("collector.poll", "web.app", True, False),
        ("alerts.digest", "fleetwatch.agent.alerting", True, False),
        ("fleetwatch.agent.loop", "fleetwatch.cli.run", True, False),
        ("fleetwatch.agent.loop", "simulator.model", True, False),
        ("fleetwatch.cli", "simulator.cli", False, False),
        ("fleetwatch.cli", "simulator.cli", True, True),
        ("simulator.cli", "web.server", True, False),
        ("web.data", "collector.catalog", False, True),
        ("alerts.topology", "detectors.base", False, True),
        ("alerts.digest", "web.data", True, False),
        ("collector.poll", "fleetwatch.store", False, True),
    ],
)
def test_the_rule_itself(source: str, target: str, late: bool, allowed: bool) -> None:
    # The rule must refuse each kind of upward import, or the test above proves nothing.
    assert (upward(source, target, late) is None) is allowed


def _cycles(graph: dict[str, list[tuple[str, bool]]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target, _ in graph.get(node, []):
            if state.get(target) == 1:
                found.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_module_imports_itself_through_others() -> None:
    # Package __init__ files that re-export their own modules are not circles of design.
    graph = {
        s: [(t, late) for t, late in ts if not s.startswith(t + ".") and not t.startswith(s + ".")]
        for s, ts in GRAPH.items()
    }
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_circle() -> None:
    assert _cycles({"a": [("b", False)], "b": [("c", True)], "c": [("a", False)]}) == [["a", "b", "c", "a"]]


def test_the_collectors_copy_of_the_ses_send_rate_thresholds_equals_the_detectors():
    """collector/plan.py reads mail senders every minute while SES is at its cap, by the same
    thresholds detectors/limits.py pages on; it keeps its own copy (it may not import detectors)."""
    from collector import plan
    from detectors import limits

    assert (plan.RATE_CAPPED, plan.RATE_RECENT) == (limits.RATE_CAPPED, limits.RATE_RECENT)
