"""The engine is usable without the service: no module of `runtime/engine` imports the job
contract, the API or the worker (the worker's `engine_options` translates between them)."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "runtime" / "engine"
SERVICE_PACKAGES = ("runtime.common", "runtime.api", "runtime.worker")


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every module an import statement names, at any depth (function-local imports too)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and not node.level:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _service_imports(source: str) -> list[str]:
    return [
        name
        for name in _imported_modules(ast.parse(source))
        if any(name == pkg or name.startswith(pkg + ".") for pkg in SERVICE_PACKAGES)
    ]


def test_no_engine_module_imports_the_service() -> None:
    modules = sorted(ENGINE.rglob("*.py"))
    assert len(modules) > 20  # the scan sees the whole package
    offending = {
        str(path.relative_to(ENGINE)): found
        for path in modules
        if (found := _service_imports(path.read_text()))
    }
    assert offending == {}


def test_the_scan_finds_top_level_local_and_package_imports() -> None:
    source = (
        "from runtime.common.jobs import ErrorCode\n"
        "def f():\n"
        "    import runtime.worker.gpu\n"
        "from runtime import api\n"
        "from runtime.fileio import file_sha256\n"
    )
    assert sorted(_service_imports(source)) == [
        "runtime.api",
        "runtime.common.jobs",
        "runtime.common.jobs.ErrorCode",
        "runtime.worker.gpu",
    ]
