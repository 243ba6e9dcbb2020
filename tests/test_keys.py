"""The ``pipeline-keys`` command, in-process and as a subprocess: it writes a key pair that pyzmq reads,
with the secret 0600, makes the directory, and refuses (exit 2, one line) to overwrite or to guess."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zmq.auth

from pipeline.auth.keys import authorized_keys, load_key_pair, load_public_key
from pipeline.cli.keys import PipelineKeys
from pipeline.errors import ConfigError
from tests.cli_helpers import ROOT


def keys_cli_command() -> list[str]:
    """The command of ``pipeline-keys``: the console script if installed, else ``python -m pipeline.cli.keys``."""
    script = shutil.which("pipeline-keys", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "pipeline.cli.keys"]


def keys_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``pipeline-keys ARGS`` as a subprocess."""
    return subprocess.run([*keys_cli_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=30,
                          check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_generate_as_a_subprocess(tmp_path: Path) -> None:
    result = keys_cli("generate", "server", "--dir=keys", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("pipeline-keys: wrote keys/server.key (public) and keys/server.key_secret "
                             "(secret, mode 0600)\n")
    secret = tmp_path / "keys" / "server.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    public, private = zmq.auth.load_certificate(secret)
    assert private is not None and zmq.auth.load_certificate(tmp_path / "keys" / "server.key") == (public, None)

    again = keys_cli("generate", "server", "--dir=keys", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr == ("pipeline-keys: error: keys/server.key: exists: a key is never overwritten "
                            "(remove it first, or choose another name)\n")
    assert zmq.auth.load_certificate(secret) == (public, private)


def test_the_directory_defaults_to_the_current_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert PipelineKeys().execute(["generate", "node7"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node7.key", "node7.key_secret"]
    assert "node7.key_secret (secret, mode 0600)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "problem"),
    [([], "missing command: expected 'generate NAME --dir=DIR'"),
     (["make", "x"], "make: unknown command (expected one of: generate)"),
     (["generate"], "generate: expected one key NAME, got 0"),
     (["generate", "a", "b"], "generate: expected one key NAME, got 2"),
     (["generate", "../up"], "NAME: expected a key name of at most 128 letters, digits"),
     (["generate", "a" * 250], "NAME: expected a key name of at most 128 letters"),  # a raw traceback
     (["generate", "x", f"--dir={'d' * 300}"], ": cannot make the directory (File name too long)"),
     pytest.param(["generate", "x", "--dir=/proc"], "error: /proc/x.key: cannot write the key file (No such file or "
                  "directory)\n", id="a directory that is there, where no file can be made",
                  marks=pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="Linux's /proc")),
     (["generate", "x", "--dri=keys"], "--dri: unknown option (did you mean '--dir'?)")],
)
def test_a_bad_command_line_exits_2_with_one_line(tmp_path: Path, monkeypatch, capsys, argv, problem) -> None:
    monkeypatch.chdir(tmp_path)
    assert PipelineKeys().execute(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("pipeline-keys: error: ") and error.count("\n") == 1
    assert problem in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="Linux's /proc")
def test_a_key_file_that_cannot_be_written_is_named_as_a_subprocess(tmp_path: Path) -> None:
    result = keys_cli("generate", "ok", "--dir=/proc", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("pipeline-keys: error: /proc/ok.key: cannot write the key file (No such file or "
                             "directory)\n")
    assert result.stdout == ""


def test_help_shows_the_command(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        PipelineKeys().execute(["--help"])
    assert stop.value.code == 0
    assert "pipeline-keys generate server --dir=keys" in capsys.readouterr().out


def test_the_directories_it_makes_are_private_at_every_level(tmp_path: Path) -> None:
    """``--dir=a/b/c`` under a umask of 000: a, b and c are all 0700 (a and b were 0777, mkdir's parents mode)."""
    result = subprocess.run(["sh", "-c", 'umask 000 && exec "$0" "$@"', *keys_cli_command(), "generate", "node7",
                             "--dir=a/b/c"], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    for directory in ("a", "a/b", "a/b/c"):
        assert stat.S_IMODE((tmp_path / directory).stat().st_mode) == 0o700, directory


def test_keys_made_under_a_umask_of_002_are_taken_as_authorized_keys(tmp_path: Path) -> None:
    """A user's default umask on Debian and Ubuntu: the public key was 0664, which pipeline-run and pipeline-gui refuse
    in authorized_keys as writable by others (cluster.md's and gui.md's recipes failed on their first run)."""
    result = subprocess.run(["sh", "-c", 'umask 002 && exec "$0" "$@"', *keys_cli_command(), "generate", "node7",
                             "--dir=workers"], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (tmp_path / "workers").iterdir()}
    assert modes == {"node7.key": 0o644, "node7.key_secret": 0o600}
    assert len(authorized_keys(tmp_path / "workers", "--Pipeline.authorized_keys")) == 1


@pytest.mark.parametrize("load", [load_key_pair, load_public_key])
def test_a_key_file_path_too_long_for_the_system_is_one_line(tmp_path: Path, load: Callable[..., Any]) -> None:
    """pathlib's is_file() raised for a name longer than the system takes: pipeline-worker and pipeline-gui printed a
    traceback and exited 1."""
    with pytest.raises(ConfigError, match=r"--key: cannot look the path up \(File name too long\)$"):
        load(tmp_path / ("k" * 300), "--key")


def test_a_folder_of_authorized_keys_too_long_for_the_system_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--authorized-keys: cannot look the path up \(File name too long\)$"):
        authorized_keys(tmp_path / ("k" * 300), "--authorized-keys")
