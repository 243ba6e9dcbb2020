"""The ready-made readers of algorithms.basic read a text file as its user saved it: a real pipeline-run each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import chain_config, read_lines, run_cli, write_config

#: A file as a Windows editor saves it: a UTF-8 byte order mark first, and \r\n line endings.
WINDOWS_TEXT = "\ufeffthe first line\r\nthe second\r\n".encode()


@pytest.mark.parametrize(("reader", "options", "expected"), [
    ("LineReader", lambda path: {"path": str(path)}, ["the first line", "the second"]),
    ("FileLines", lambda path: {"pattern": str(path)},
     [{"line": 1, "text": "the first line"}, {"line": 2, "text": "the second"}]),
], ids=["LineReader", "FileLines"])
def test_a_byte_order_mark_is_not_part_of_the_first_line(tmp_path: Path, reader: str, options: Any,
                                                           expected: list[Any]) -> None:
    """The first line came out as '\\ufeffthe first line': a step comparing it to a word never matched."""
    text = tmp_path / "saved.txt"
    text.write_bytes(WINDOWS_TEXT)
    output = tmp_path / "out.jsonl"
    document = chain_config(str(output))
    document["Pipeline"]["producer_conf"]["class"] = reader
    document["Pipeline"]["stagers_conf"][0]["nb_thread"] = 1  # the lines in their order
    del document["Counter"]
    document[reader] = options(text)
    result = run_cli(f"--config={write_config(tmp_path, document)}", "--no-progress")
    assert result.returncode == 0, result.stderr
    written = read_lines(output)
    if reader == "FileLines":
        written = [{key: line[key] for key in ("line", "text")} for line in written]
    assert written == expected
