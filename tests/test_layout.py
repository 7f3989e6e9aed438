"""The package map's import directions (rollout/__init__.py), checked on every import statement,
including imports inside functions: a forbidden import fails here, with the file and line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support import REPO_ROOT

IO_MODULES = ("httpx", "subprocess", "socket", "urllib.request", "requests", "pulumi", "pulumi_kubernetes")
# (package, prefixes its modules must not import, why)
RULES: list[tuple[str, tuple[str, ...], str]] = [
    (
        "rollout.analysis",
        ("rollout.release", "rollout.monitoring", "rollout.local", "rollout.review", "rollout.cli",
         "rollout.config", "components", *IO_MODULES),
        "analysis is pure: metrics in, verdict out",
    ),
    ("rollout.monitoring", ("rollout.release", "rollout.local", "rollout.review", "rollout.cli"),
     "monitoring is generated from the model, not from the bot"),
    ("rollout.release", ("rollout.local", "rollout.review", "rollout.cli", "components"),
     "the production path loads no stand-in and no mock runtime"),
    ("rollout.release.prometheus", ("rollout.",),
     "the Prometheus client only talks to its server: rollout.release.measuring reads a check through it"),
    ("rollout.review", ("rollout.local", "rollout.cli"), "review tools run without stand-ins"),
    ("rollout.model", ("rollout.", "components"), "the model is the bottom layer"),
    ("rollout.numbers", ("rollout.", "components"), "number formatting is a bottom layer, like the model"),
    ("rollout.config", ("rollout.analysis", "rollout.monitoring", "rollout.release", "rollout.review",
                        "rollout.local", "rollout.cli", "components"), "config only reads files into the model"),
    ("components", ("rollout.local", "rollout.review", "rollout.release", "rollout.cli"),
     "the Pulumi program never loads the bot or a stand-in"),
    ("__main__", ("rollout.local", "rollout.review", "rollout.release", "rollout.cli"),
     "the Pulumi program never loads the bot or a stand-in"),
]
# Only these may import rollout.local (besides rollout.local itself and the tests).
LOCAL_IMPORTERS = ("rollout.cli", "rollout.local")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the source, relative ones resolved."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            # `from rollout import release` imports the subpackage rollout.release
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Broken rules in {module name: (source, is_package)}, as 'module:line imports X (why)'."""
    problems = []
    for module, (source, is_package) in sorted(sources.items()):
        for line, imported in imports(source, module, is_package):
            for package, forbidden, why in RULES:
                if module != package and not module.startswith(package + "."):
                    continue
                for prefix in forbidden:
                    hit = imported.startswith(prefix) if prefix.endswith(".") else (
                        imported == prefix or imported.startswith(prefix + ".")
                    )
                    if hit and not imported.startswith(package):
                        problems.append(f"{module}:{line} imports {imported} ({why})")
            local = imported == "rollout.local" or imported.startswith("rollout.local.")
            if local and not module.startswith(LOCAL_IMPORTERS):
                problems.append(f"{module}:{line} imports {imported} (only the CLI and tests load stand-ins)")
    return sorted(set(problems))


def import_cycles(sources: dict[str, tuple[str, bool]]) -> list[list[str]]:
    """Groups of product modules that import each other, directly or around a circle; imports
    under `if TYPE_CHECKING:` count too (a type-only import that closes a circle is still one
    way in and another way back, e.g. adapter -> counts -> adapter)."""
    graph: dict[str, set[str]] = {}
    for module, (source, is_package) in sources.items():
        targets = set()
        for _, imported in imports(source, module, is_package):
            parts = imported.split(".")
            while parts and ".".join(parts) not in sources:
                parts.pop()
            if parts and ".".join(parts) != module:
                targets.add(".".join(parts))
        graph[module] = targets
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def product_sources() -> dict[str, tuple[str, bool]]:
    files = [*REPO_ROOT.joinpath("rollout").rglob("*.py"), *REPO_ROOT.joinpath("components").rglob("*.py"),
             REPO_ROOT / "__main__.py"]
    return {module_name(p, REPO_ROOT): (p.read_text(), p.name == "__init__.py") for p in files}


def test_the_product_keeps_its_import_directions():
    assert violations(product_sources()) == []


def test_no_module_imports_its_way_back_to_itself():
    assert import_cycles(product_sources()) == []


def test_a_check_goes_one_way_client_measuring_analysis_bot():
    """The circle of issue 16 (measure() -> the judge's counts -> the client, under TYPE_CHECKING)
    is caught both ways: the client importing anything of ours, and any circle at all."""
    sources = product_sources()
    client, is_package = sources["rollout.release.prometheus"]
    sources["rollout.release.prometheus"] = (
        client + "\n\nif TYPE_CHECKING:\n    from rollout.release.measuring import measure\n", is_package)
    assert any(p.startswith("rollout.release.prometheus:") and "imports rollout.release.measuring" in p
               for p in violations(sources))
    assert ["rollout.release.measuring", "rollout.release.prometheus"] in import_cycles(sources)
    # and the analysis side reads nothing: the judge gets counts, never a client
    assert not [i for _, i in imports(sources["rollout.analysis.judging"][0], "rollout.analysis.judging", False)
                if i.startswith("rollout.release")]


def test_top_level_of_rollout_holds_only_model_config_cli_and_subpackages():
    top = sorted(p.name for p in REPO_ROOT.joinpath("rollout").iterdir() if p.name != "__pycache__")
    assert top == ["__init__.py", "analysis", "cli", "config.py", "local", "model.py", "monitoring",
                   "numbers.py", "release", "review"]


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("rollout.analysis.gates", "from rollout.release.bot import ReleaseBot", "rollout.release.bot"),
        ("rollout.analysis.decision", "import httpx", "httpx"),
        ("rollout.analysis.gates", "from rollout import release", "rollout.release"),
        ("rollout.analysis.gates", "from ..local import demo", "rollout.local"),
        ("rollout.monitoring.alert_rules", "from rollout.release.notify import ROLLBACK_ALERT", "rollout.release"),
        ("rollout.release.bot", "from rollout.local.synthetic import Workload", "rollout.local"),
        ("rollout.review.render", "from rollout.local.demo import run_demo", "rollout.local"),
        ("components.weighted_service", "from rollout.release.deployer import Deployer", "rollout.release"),
    ],
)
def test_a_forbidden_import_is_caught_even_inside_a_function(module, line, expected):
    sources = product_sources()
    source, is_package = sources[module]
    sources[module] = (source + f"\n\ndef _added():\n    {line}\n", is_package)
    found = violations(sources)
    assert any(p.startswith(f"{module}:") and f"imports {expected}" in p for p in found), found


def test_the_cli_may_load_the_demo():
    sources = product_sources()
    assert not [p for p in violations(sources) if p.startswith("rollout.cli")]
    assert any(imported.startswith("rollout.local")
               for imported in (i for _, i in imports(sources["rollout.cli.local"][0], "rollout.cli.local", False)))
