"""The ready-made readers of algorithms.basic read a text file as its user saved it: a real pipeline-run each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import ROOT, chain_config, read_lines, run_cli, write_config

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


def reader_config(tmp_path: Path, reader: str, options: dict[str, Any]) -> Path:
    """COUNT replaced by ``reader`` in the chain config (its lines in their order), written to a file."""
    document = chain_config(str(tmp_path / "out.jsonl"))
    document["Pipeline"]["producer_conf"]["class"] = reader
    document["Pipeline"]["stagers_conf"][0]["nb_thread"] = 1
    del document["Counter"]
    document[reader] = options
    return write_config(tmp_path, document)


@pytest.mark.parametrize(("reader", "option"), [("LineReader", "path"), ("FileLines", "pattern")])
def test_a_line_that_is_not_utf8_is_named_by_its_file_and_number(tmp_path: Path, reader: str, option: str) -> None:
    """It failed as a bare UnicodeDecodeError at a position in the file's buffer: no file, no line."""
    text = tmp_path / "latin1.txt"
    text.write_bytes(b"ok\ncaf\xe9\n")
    result = run_cli(f"--config={reader_config(tmp_path, reader, {option: str(text)})}", "--no-progress")
    assert result.returncode == 1, result.stderr
    assert f"ValueError: {text}: line 2 is not UTF-8 text (byte 4 of the line: invalid continuation byte)" in (
        result.stderr)
    assert read_lines(tmp_path / "out.jsonl")[:1] in (["ok"], [{"file": str(text), "line": 1, "text": "ok"}])


def test_a_pipe_is_read_as_a_file(tmp_path: Path) -> None:
    """``--LineReader.path=/dev/stdin`` (``cat poem.txt | pipeline-run ...``) was refused: 'does not exist'."""
    result = subprocess.run([sys.executable, "-m", "pipeline", f"--config={reader_config(tmp_path, 'LineReader', {})}",
                             "--no-progress", "--LineReader.path=/dev/stdin"], cwd=ROOT, input="one\ntwo\n",
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert read_lines(tmp_path / "out.jsonl") == ["one", "two"]
