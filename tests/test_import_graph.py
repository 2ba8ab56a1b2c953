"""The import graph of our four packages: no cycles, and dependencies point one way.

DESIGN.md: `client → strategies (exchange) → nothing of ours but sites`, `client → sites`,
`server → strategies, sites`, `server → client`; `sites` imports none of the others, `strategies`
never imports `client` or `server`, `client` never imports `server`; no import cycles.

The graph is grimp's (the engine of import-linter), built from the source of this checkout: every
import counts, those inside functions and under `if TYPE_CHECKING:` included, since a lazy import
is still a dependency. A package's `__init__` importing its own submodules is an import like any
other, so it makes a cycle only if a submodule imports the package back. `from sites.synthetic
import vocabulary` does: it names the package, whose `__init__` runs first (grimp records only the
submodule, so the package is added here); `import sites.synthetic.vocabulary` and `from
sites.synthetic.vocabulary import X` are how a submodule imports a sibling.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sites", "client", "strategies", "server")
FORBIDDEN = (
    ("strategies", "client"),
    ("strategies", "server"),
    ("sites", "client"),
    ("sites", "strategies"),
    ("sites", "server"),
    ("client", "server"),
)
"""(importer, imported) packages: no chain of imports may lead from the first to the second."""


FROM_PACKAGE = re.compile(r"\s*from\s+([\w.]+)\s+import\b")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=False, cache_dir=None)
    add_named_packages(graph)
    return graph


def add_named_packages(graph: grimp.ImportGraph) -> None:
    """Add `importer -> package` for every `from package import submodule` (see the docstring)."""
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                named = FROM_PACKAGE.match(detail["line_contents"])
                if named and named[1] in graph.modules and named[1] not in (imported, importer):
                    graph.add_import(importer=importer, imported=named[1],
                                     line_number=detail["line_number"],
                                     line_contents=detail["line_contents"])


def _hop(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    details = graph.get_import_details(importer=importer, imported=imported)
    where = f":{details[0]['line_number']} `{details[0]['line_contents']}`" if details else ""
    return f"{importer}{where} -> {imported}"


def _chain(graph: grimp.ImportGraph, chain: tuple[str, ...]) -> str:
    return "\n    ".join(_hop(graph, a, b) for a, b in zip(chain, chain[1:]))


def cycles(graph: grimp.ImportGraph) -> set[frozenset[str]]:
    """Each set of modules that import each other, directly or through one another (a strongly
    connected component of more than one module)."""
    found = set()
    for module in graph.modules:
        both_ways = graph.find_upstream_modules(module) & graph.find_downstream_modules(module)
        if both_ways:
            found.add(frozenset(both_ways | {module}))
    return found


def one_loop(graph: grimp.ImportGraph, cycle: frozenset[str]) -> tuple[str, ...]:
    """One closed chain of imports through `cycle`, for the failure message."""
    start = min(cycle)
    step = min(m for m in graph.find_modules_directly_imported_by(start) if m in cycle)
    back = graph.find_shortest_chain(importer=step, imported=start)
    return (start, *back)


def test_the_graph_is_this_checkout():
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations is not None, package
        found = [Path(p).resolve() for p in spec.submodule_search_locations]
        assert found == [ROOT / package], (f"`{package}` is imported from {found}; expected "
                                           f"{ROOT / package} (run pytest from the repository)")


def test_every_module_is_in_the_graph(graph):
    on_disk = {".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    assert on_disk <= graph.modules, sorted(on_disk - graph.modules)


@pytest.mark.parametrize("importer, imported", FORBIDDEN, ids=[f"{a}-not-{b}" for a, b in FORBIDDEN])
def test_dependencies_point_one_way(graph, importer, imported):
    chains = graph.find_shortest_chains(importer=importer, imported=imported, as_packages=True)
    shown = "\n  ".join(_chain(graph, c) for c in sorted(chains))
    assert not chains, (f"`{importer}` must not import `{imported}` (DESIGN.md), but:\n  {shown}\n"
                        "Move what both need to the lower package (a wire fact to "
                        "strategies/exchange.py), or pass it in as plain data.")


def test_no_import_cycles(graph):
    found = sorted(sorted(c) for c in cycles(graph))
    loops = "\n".join(
        f"- {' <-> '.join(c)}; for example:\n    {_chain(graph, one_loop(graph, frozenset(c)))}"
        for c in found)
    assert not found, ("import cycles between our modules:\n" + loops + "\nPut what both "
                       "sides need in the lower module or a small one of its own.")
