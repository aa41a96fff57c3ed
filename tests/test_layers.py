"""The layers hold: who may import whom, read the environment, or know a table key.

Read from the source (ast), so a new import across a layer fails here before review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "shared"
CORE = [
    "admission", "arm_bodies", "chunk_messages", "cursors", "config", "dedupe", "errors", "events", "grants", "ids",
    "increment_steps", "increments", "model", "notices", "placement", "poison", "policies", "progress",
    "refusals", "retention", "rpo", "scheduler", "tokens",
]  # fmt: skip
HTTP_AND_TRIGGERS = [
    "api",
    "openapi",
    "openapi_policies",
    "openapi_schema",
    "openapi_status",
    "policy_api",
    "problems",
    "triggers",
]
EDGES = (
    "shared.store",
    "shared.tables",
    "shared.arm",
    "shared.topic",
    "shared.telemetry",
    "shared.pageblobs",
    "shared.chunk_queue",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module a file imports (`from shared import x` counts as `shared.x`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if node.module == "shared"}
    return found


def shared_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SHARED.rglob("*.py"))}


def touches(found: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(name for name in found if name.startswith(prefixes))


def test_function_app_only_registers_the_blueprints():
    found = imports(ROOT / "function_app.py")
    assert found == {"azure.functions", "shared.api", "shared.policy_api", "shared.triggers", "shared"}


@pytest.mark.parametrize("name", HTTP_AND_TRIGGERS)
def test_triggers_and_http_reach_the_engine_only_through_the_service(name: str):
    found = imports(SHARED / f"{name}.py")
    assert touches(found, (*EDGES, "shared.engine")) == []


@pytest.mark.parametrize("name", CORE)
def test_the_core_does_no_io_and_reads_no_environment(name: str):
    found = imports(SHARED / f"{name}.py")
    forbidden = (*EDGES, "shared.engine", "shared.service", "shared.runtime", "shared.api", "shared.triggers")
    assert touches(found, (*forbidden, "os")) == []
    assert not [n for n in found if n.startswith("azure.") and n != "azure.functions"], name


def test_only_the_shell_and_the_composition_root_hold_the_store_or_arm():
    allowed = ("shared.engine", "shared.service", "shared.runtime", "shared.store", "shared.tables", "shared.arm")
    for name, path in shared_modules().items():
        if not name.startswith(allowed):
            assert touches(imports(path), EDGES) == [], name


def test_the_edges_know_no_decision_and_no_engine():
    for name, path in shared_modules().items():
        if name.startswith(("shared.tables", "shared.store", "shared.arm")):
            found = imports(path)
            assert touches(found, ("shared.engine", "shared.service", "shared.scheduler", "shared.runtime")) == [], name


def test_nothing_shipped_imports_the_offline_world_or_reads_the_environment_but_runtime():
    for name, path in shared_modules().items():
        found = imports(path)
        assert touches(found, ("local", "tests")) == [], name
        if name != "shared.runtime":
            assert "os" not in found, name


def test_only_the_tables_package_knows_a_partition_key():
    for name, path in shared_modules().items():
        if name.startswith("shared.tables"):
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
        }  # fmt: skip
        strings = [
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
        ]
        assert not [text for text in strings if "PartitionKey" in text], name


def test_no_module_is_over_400_lines_but_the_openapi_document():
    long = {
        name: lines
        for name, path in shared_modules().items()
        if (lines := len(path.read_text().splitlines())) > 400 and name != "shared.openapi"
    }
    assert long == {}
