"""The shape of the house (docs/architecture.md), checked: no import cycles, small modules, no sys.path edits, and
the job package free of the flow's libraries (it runs on the cluster)."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {
    "flows": REPO / "flows",
    "tasks": REPO / "tasks",
    "blocks": REPO / "blocks",
    "fruitjob": REPO / "spark_jobs" / "fruitjob",
}
# A review prompt, not a cap: modules are sized by cohesion (docs/architecture.md, "House rules").
REVIEW_LINES = 400
ENTRY_SCRIPT = REPO / "spark_jobs" / "extract_features.py"


def _modules() -> dict[str, Path]:
    found = {"extract_features": ENTRY_SCRIPT}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that ``path`` imports (at any level: a function-level import is a dependency too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in modules}
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # A package's __init__ importing its own modules is not a cycle of design; ours are empty anyway.
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_long_modules_are_named_for_review():
    """Warns (never fails) about modules over REVIEW_LINES: a prompt to ask whether one holds two ideas."""
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > REVIEW_LINES}
    if long:
        listed = ", ".join(f"{name} ({lines} lines)" for name, lines in sorted(long.items()))
        warnings.warn(f"review whether these hold more than one idea: {listed}", stacklevel=1)


def test_sys_path_is_edited_only_by_the_spark_submit_entry_script():
    # Tests that start another interpreter (the parity Python) hand it the package path in its script: not ours.
    ours = [*_modules().values(), *(REPO / "bench").glob("*.py"), REPO / "tests" / "conftest.py"]
    ours.remove(ENTRY_SCRIPT)
    editing = [path for path in ours if "sys.path" in path.read_text()]
    assert editing == [], "import fruitjob as the installed package instead"
    assert "sys.path" in ENTRY_SCRIPT.read_text()


def test_the_job_package_needs_nothing_of_the_flow():
    """fruitjob runs on the cluster with the packages shipped there: no Prefect, boto3, flows or tasks."""
    forbidden = ("prefect", "prefect_aws", "boto3", "botocore", "flows", "tasks", "blocks")
    for path in PACKAGES["fruitjob"].rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not [n for n in names if n.split(".")[0] in forbidden], f"{path.name} imports {names}"
