"""Text that cannot leave Python as bytes: a lone surrogate, which JSON writes ``"\\ud800"`` and which Python makes of a
byte of a command line or a file's name that is not UTF-8 (``b'\\xff'`` is ``'\\udcff'``).

Given to what reaches a socket, a wire frame, the file system or the monitor (a step's name, module or class, a run
setting, a worker's step, the monitor's host), it is refused in one line, exit 2: it passed every check and crashed
the run's threads, os.open or libzmq. A config file whose name is not UTF-8 is a file like any other: it runs, and
its name reaches the graph exports and the monitor as text."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from gui.app import PipeGui
from pipeline import ConfigError, Pipeline
from pipeline.cli.worker import PipelineWorker

from .cli_helpers import chain_config, run_cli, write_config
from .monitor_helpers import WAIT, Subscriber, has

#: A lone surrogate as JSON gives it, and one as Python reads the byte 0xff of a file's name or a command line.
LONE, ESCAPED_BYTE = "\ud800", "\udcff"
#: The stager of chain_config, and the run settings that name files.
STAGER, KEY_FILES = "Pipeline.stagers_conf[0]", ("server_key", "authorized_keys", "gui_server_key", "gui_key")


def with_value(document: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``document`` with ``value`` at ``key`` (``Pipeline.stagers_conf[0].name``): a step's (a step renamed so in the
    ``next_steps`` that name it too, for the run to be valid but for the value), or a run setting's."""
    pipeline = document["Pipeline"]
    steps = {STAGER: pipeline["stagers_conf"][0], "Pipeline.producer_conf": pipeline["producer_conf"],
             "Pipeline.consumer_conf": pipeline["consumer_conf"]}
    place, _, name = key.rpartition(".")
    if place not in steps:
        pipeline[name] = value
        return document
    if name == "name":
        for step in steps.values():
            if step.get("next_steps") == steps[place]["name"]:
                step["next_steps"] = value
    steps[place][name] = value
    return document


def refused(text: str, where: str, key: str) -> None:
    """``text`` is the one-line error that names ``where`` and ``key`` and says the value holds a lone surrogate."""
    assert text.startswith(f"{where}: {key}: expected ") and "\n" not in text, text
    assert "is a lone surrogate, which" in text, text


#: The keys whose text goes out as UTF-8 (a socket's address, a wire frame, the monitor): a file name's byte that is
#: not UTF-8 is refused there too; and those that name files, which hold such bytes (not a lone surrogate of JSON).
UTF8_KEYS = [f"{STAGER}.name", "Pipeline.producer_conf.name", "Pipeline.consumer_conf.name", f"{STAGER}.module",
             f"{STAGER}.class", "Pipeline.gui_address"]
PATH_KEYS = ["Pipeline.dead_letter", *(f"Pipeline.{name}" for name in KEY_FILES)]


@pytest.mark.parametrize(("key", "text"), [*((key, LONE) for key in UTF8_KEYS + PATH_KEYS),
                                           *((key, ESCAPED_BYTE) for key in UTF8_KEYS)])
def test_a_lone_surrogate_where_the_framework_sends_text_is_refused_naming_file_and_key(
        tmp_path: Path, key: str, text: str) -> None:
    value = f"{text}:5565" if key == "Pipeline.gui_address" else text
    path = write_config(tmp_path, with_value(chain_config(str(tmp_path / "out.jsonl")), key, value))
    with pytest.raises(ConfigError) as caught:
        Pipeline.from_config(str(path))
    refused(str(caught.value), str(path), key)


@pytest.mark.parametrize("setting", ["dead_letter", *KEY_FILES])
def test_a_run_setting_of_the_overrides_with_a_lone_surrogate_is_refused(tmp_path: Path, setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Pipeline.from_config(chain_config(str(tmp_path / "out.jsonl")), {"Pipeline": {setting: f"a{LONE}"}})
    refused(str(caught.value), "overrides", f"Pipeline.{setting}")


@pytest.mark.parametrize("name", [f"{LONE}.json", "a\0b.json"], ids=["lone-surrogate", "nul"])
def test_a_config_path_that_no_file_name_holds_is_one_line(name: str) -> None:
    """Pipeline.from_config("\\ud800.json"): opening it raised a UnicodeEncodeError (a NUL, a ValueError)."""
    with pytest.raises(ConfigError) as caught:
        Pipeline.from_config(name)
    assert str(caught.value) == (f"{name!r}: cannot read the config file: no file name holds a NUL character or a lone "
                                 "surrogate (expected a file's path)")


#: The tester's configs: a step's name in each kind of step and way of running it, and the dead-letter file.
CLI_CASES = [
    pytest.param("Pipeline.consumer_conf.name", "threads", (), id="consumer-threads"),
    pytest.param("Pipeline.consumer_conf.name", "sequential", (), id="consumer-sequential"),
    pytest.param(f"{STAGER}.name", "threads", (), id="stager-in-a-worker-process"),
    pytest.param(f"{STAGER}.name", "threads", ("--graph=dot",), id="graph-export"),
    pytest.param("Pipeline.dead_letter", "threads", (), id="dead-letter"),
]


@pytest.mark.parametrize(("key", "mode", "more"), CLI_CASES)
def test_pipeline_run_refuses_a_lone_surrogate_in_one_line_with_exit_2(
        tmp_path: Path, key: str, mode: str, more: tuple[str, ...]) -> None:
    """As the tester ran them: a run's router thread crashed on its socket's address (exit 1), or os.open raised."""
    document = with_value(chain_config(str(tmp_path / "out.jsonl")), key, LONE)
    if key == f"{STAGER}.name":
        document["Pipeline"]["stagers_conf"][0]["nb_process"] = 1
    path = write_config(tmp_path, document)
    result = run_cli(f"--config={path}", f"--Pipeline.mode={mode}", "--no-progress", "--Pipeline.gui=False", *more)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.startswith("pipeline-run: error: "), result.stderr
    refused(result.stderr.removeprefix("pipeline-run: error: ").removesuffix("\n"), str(path), key)


def test_a_worker_for_a_step_name_with_a_lone_surrogate_exits_2_in_one_line(capsys: pytest.CaptureFixture) -> None:
    """``--step=$'\\xff'``: the greeting that carries the name crashed (UnicodeEncodeError), before any key was read."""
    status = PipelineWorker().execute(["--connect=tcp://127.0.0.1:5570", "--server-key=none.key",
                                       "--key=none.key_secret", f"--step=S{ESCAPED_BYTE}"])
    assert status == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    refused(error.removeprefix("pipeline-worker: error: ").removesuffix("\n"), "command line", "--step")


def test_a_monitor_host_with_a_lone_surrogate_exits_2_in_one_line(capsys: pytest.CaptureFixture) -> None:
    """``pipeline-gui --host=$'\\xff'``: libzmq's bind raised a traceback."""
    assert PipeGui().execute([f"--host={ESCAPED_BYTE}"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    refused(error.removeprefix("pipeline-gui: error: ").removesuffix("\n"), "command line", "--host")


def test_a_config_file_and_a_dead_letter_file_whose_names_are_not_utf8_work(tmp_path: Path) -> None:
    """b'\\xff.json' is a file like any other: it runs, and its name is text in the graph export (written as repr
    writes it); a dead-letter file so named on the command line is written."""
    folder = os.fsencode(tmp_path)
    config = Path(os.fsdecode(folder + b"/\xff.json"))
    config.write_text(json.dumps(chain_config(str(tmp_path / "out.jsonl"))), encoding="utf-8")
    dead_letter = os.fsdecode(folder + b"/\xfe.jsonl")
    result = run_cli(f"--config={config}", f"--Pipeline.dead_letter={dead_letter}", "--no-progress",
                     "--Pipeline.gui=False")
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()) == 5
    assert os.path.isfile(os.fsencode(dead_letter))
    graph = run_cli(f"--config={config}", "--graph=dot")
    assert graph.returncode == 0, graph.stderr
    assert graph.stdout.startswith('digraph "\\\\udcff" {')


def test_the_monitor_sends_a_name_that_is_not_utf8_as_text(tmp_path: Path) -> None:
    """A run of b'\\xff\\xfe.json': its name and its config's path went out as JSON escapes of lone surrogates,
    which pipeline-gui (Qt) showed cut at the first."""
    subscriber = Subscriber()
    try:
        config = Path(os.fsdecode(os.fsencode(tmp_path) + b"/\xff\xfe.json"))
        config.write_text(json.dumps(chain_config(str(tmp_path / "out.jsonl"))), encoding="utf-8")
        pipeline = Pipeline.from_config(str(config), {"Pipeline": {
            "gui_address": subscriber.address, "gui_plaintext": True, "progress": False}})
        run = threading.Thread(target=pipeline.run, name="test-run")
        run.start()
        messages = subscriber.receive_until(has("finish"))
        run.join(WAIT)
        assert not run.is_alive()
    finally:
        subscriber.close()
    for _, message in messages:
        json.dumps(message, ensure_ascii=False).encode("utf-8")  # every string is text UTF-8 encodes
        assert message["pipeline"] == "\\udcff\\udcfe"
        assert message["config"] == f"{tmp_path}/\\udcff\\udcfe.json"
