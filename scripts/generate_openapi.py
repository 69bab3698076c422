"""Write the API's OpenAPI document, generated from the resolver, to docs/openapi.json.

Run after changing a route or model: `python scripts/generate_openapi.py`. A test fails while the
committed document differs from the generated one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "docs" / "openapi.json"


def render() -> str:
    sys.path.insert(0, str(ROOT))
    from runtime.api.routes import openapi_document

    return json.dumps(json.loads(openapi_document()), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    DOCUMENT.write_text(render(), encoding="utf-8")
    print(f"wrote {DOCUMENT.relative_to(ROOT)}")
