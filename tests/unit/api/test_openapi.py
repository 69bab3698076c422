"""The committed OpenAPI document is the one the code generates, and it documents the errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_openapi", ROOT / "scripts" / "generate_openapi.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_document_equals_the_generated_one() -> None:
    committed = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert committed == _generator().render(), "run: python scripts/generate_openapi.py"


def test_every_operation_documents_the_error_shape_and_requires_the_api_key() -> None:
    document = json.loads(_generator().render())
    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    assert {(path, method) for path, method, _ in operations} == {
        ("/v1/uploads", "post"),
        ("/v1/avatars", "post"),
        ("/v1/avatars", "get"),
        ("/v1/avatars/{avatar_id}", "get"),
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{job_id}", "get"),
        ("/v1/jobs/{job_id}", "delete"),
        ("/v1/jobs/{job_id}/events", "get"),
        ("/v1/jobs/{job_id}/webhook/redeliver", "post"),
    }
    for path, method, operation in operations:
        error = operation["responses"]["400"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorResponse"}, (path, method)
    assert document["security"] == [{"apiKey": []}]
