"""docs/cli.md shows what the CLI prints: its `--json` error example is run and compared."""

from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path

from runtime.cli.main import main

CLI_DOC = Path(__file__).resolve().parents[3] / "docs" / "cli.md"


def test_the_json_error_example_is_what_the_cli_prints() -> None:
    text = CLI_DOC.read_text()
    found = re.search(
        r"For example `musetalk (?P<args>[^`]+)` prints,\s*and exits with (?P<code>\d+):\s*"
        r"```json\n(?P<json>.*?)```",
        text,
        re.DOTALL,
    )
    assert found, "docs/cli.md lost its --json error example"
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(shlex.split(found["args"]), stdout=stdout, stderr=stderr)
    assert code == int(found["code"])
    assert stdout.getvalue() == found["json"]
    assert json.loads(stdout.getvalue())["error"]["exit_code"] == code
    assert stderr.getvalue() == ""
