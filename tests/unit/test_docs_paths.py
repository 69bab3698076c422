"""The docs cite only what a user's clone has: no paths of the machine they were written on, and
every repository path they name in backticks exists (upstream's own files are marked as such)."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
REPO_PATH = re.compile(r"`((?:runtime|docs|scripts|bench|tests|infra|docker|examples)/[^`\s*<{]+)`")


def test_no_doc_cites_a_path_outside_the_clone() -> None:
    for doc in DOCS:
        text = doc.read_text()
        for outside in ("/work/", "../shared", "MUSETALK.md", "MMLAB_CPU.md", "STYLE.md"):
            assert outside not in text, f"{doc.name} cites {outside}"


def test_every_repository_path_a_doc_names_exists() -> None:
    missing = []
    for doc in DOCS:
        text = doc.read_text()
        for match in REPO_PATH.finditer(text):
            if "upstream" in text[max(0, match.start() - 40) : match.start()]:
                continue  # a file of upstream's repository, not ours
            path = match.group(1).rstrip(".,:;)").split("::")[0]
            if not (REPO_ROOT / path).exists():
                missing.append(f"{doc.name}: {path}")
    assert missing == []
