"""The docs' fenced blocks, and their commands run as a reader runs them (the markers: tests/test_docs.py)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from tests.slurm_cluster import SlurmCluster

#: The repository root: the documents' examples name its files.
ROOT = Path(__file__).resolve().parent.parent

#: ``pipeline-run`` as its console script runs it: sys.path[0] is not the working directory.
PIPELINE_RUN = [
    sys.executable,
    "-c",
    "import sys; del sys.path[0]; sys.argv[0] = 'pipeline-run'; from pipeline.cli.run import main; main()",
]
#: The other console scripts a runnable block may run, by their modules.
COMMAND_MODULES = {"pipeline-keys": "pipeline.cli.keys", "pipeline-worker": "pipeline.cli.worker"}
#: SLURM's client commands: a ``run: slurm`` block may run them on the cluster's login node.
SLURM_COMMANDS = {"sbatch", "squeue", "scontrol", "scancel", "sinfo"}
#: Seconds any documented command may take (``sbatch --wait`` of a whole recipe included).
COMMAND_SECONDS = 60

_MARKER = re.compile(r"<!--\s*(file|run|output-of|no-run|same-as)\s*(?::\s*(.*?))?\s*-->")
_FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")


@dataclass
class Block:
    """A fenced code block: where it starts, its language, its text and the marker before it."""

    doc: Path
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    marker: str = ""
    argument: str = ""

    @property
    def where(self) -> str:
        """The document and line of the opening fence, for a failure message."""
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def fenced_blocks(doc: Path) -> list[Block]:
    """Every fenced block of ``doc``, with the marker comment on a line just before it, if any."""
    blocks: list[Block] = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    pending: tuple[str, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.fullmatch(line.strip())
        fence = _FENCE.match(line)
        if marker:
            pending = (marker.group(1), marker.group(2) or "")
        elif fence:
            end = i + 1
            while end < len(lines) and not lines[end].startswith(fence.group(1)):
                end += 1
            kind, argument = pending or ("", "")
            text = "".join(f"{body}\n" for body in lines[i + 1 : end])
            blocks.append(Block(doc, i + 1, fence.group(2), text, kind, argument))
            pending = None
            i = end
        elif line.strip():
            pending = None  # a marker applies only to the block right after it
        i += 1
    return blocks


@dataclass
class Background:
    """A command started with ``&``: its process and the file that takes what it prints."""

    line: str
    process: subprocess.Popen[str]
    output: IO[str]


@dataclass
class Example:
    """The directory where one document's examples run, the last exit status, and the SLURM cluster of
    ``run: slurm`` blocks (None: such blocks are left to test_slurm_recipes_run_as_documented)."""

    directory: Path
    last_status: int | None = None
    cluster: SlurmCluster | None = None
    background: list[Background] = field(default_factory=list)

    def substitute(self, text: str) -> str:
        """``text`` with the docs' host names replaced by the addresses of the cluster's nodes."""
        for name, address in (self.cluster.hosts if self.cluster else {}).items():
            text = re.sub(rf"\b{re.escape(name)}\b", address, text)
        return text

    def command(self, line: str) -> tuple[list[str], dict[str, str]]:
        """The argv and environment of a documented command line (on the cluster's login node if there is one)."""
        argv, env = self._command(self.substitute(line))
        return (self.cluster.command(argv), env) if self.cluster else (argv, env)

    def _command(self, line: str) -> tuple[list[str], dict[str, str]]:
        words = shlex.split(line)
        env = dict(self.cluster.env if self.cluster else os.environ)
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # a rewritten module is never shadowed by a stale .pyc
        paths: list[str] = []
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            name, value = words.pop(0).split("=", 1)
            if name == "PYTHONPATH":
                paths += [str((self.directory / p).resolve()) for p in value.split(os.pathsep)]
            else:
                env[name] = value
        env["PYTHONPATH"] = os.pathsep.join([*paths, str(ROOT)])
        if not words:
            raise AssertionError(f"no command in {line!r}")
        if words[0] == "pipeline-run":
            return [*PIPELINE_RUN, *words[1:]], env
        if words[0] == "python":
            return [sys.executable, *words[1:]], env
        if words[0] in COMMAND_MODULES:
            return [sys.executable, "-m", COMMAND_MODULES[words[0]], *words[1:]], env
        if words[0] in SLURM_COMMANDS:
            assert self.cluster is not None, f"{words[0]} needs a SLURM cluster: mark its block `run: slurm`"
            return words, env
        raise AssertionError(f"a runnable block may only run pipeline-run, {', '.join(COMMAND_MODULES)}, python or "
                             f"(in a `run: slurm` block) {', '.join(sorted(SLURM_COMMANDS))}, not {words[0]!r}")

    def run(self, line: str) -> tuple[int, list[str]]:
        """Run a documented command line; its exit status and its output lines."""
        argv, env = self.command(line)
        result = subprocess.run(
            argv, cwd=self.directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=COMMAND_SECONDS, check=False,
        )
        return result.returncode, result.stdout.splitlines()

    def start(self, line: str) -> None:
        """Start a documented command line in the background (``COMMAND &``)."""
        argv, env = self.command(line)
        # Closed by wait() or close(): it outlives this call, so no with-block.
        output = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        process = subprocess.Popen(argv, cwd=self.directory, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, text=True)
        self.background.append(Background(line, process, output))

    def wait(self) -> tuple[int, list[str]]:
        """Wait for the background commands, in the order they started; the last one's exit status, and
        what they printed."""
        assert self.background, "`wait` without a command started with `&` before it"
        status, lines = 0, []
        while self.background:
            started = self.background.pop(0)
            try:
                status = started.process.wait(COMMAND_SECONDS)
            finally:
                if started.process.poll() is None:
                    started.process.kill()
                    started.process.wait()
                started.output.seek(0)
                lines += started.output.read().splitlines()
                started.output.close()
        return status, lines

    def close(self) -> None:
        """Kill (by pid) the background commands still running: a failed block leaves nothing behind."""
        for started in self.background:
            if started.process.poll() is None:
                started.process.kill()
            started.process.wait()
            started.output.close()
        self.background.clear()

    def diagnostics(self) -> str:
        """What the SLURM jobs and daemons said, for a failure message ("" without a cluster)."""
        if self.cluster is None:
            return ""
        jobs = [f"--- {path.name}\n{path.read_text(errors='replace')}"
                for path in sorted(self.directory.glob("slurm-*"))]
        return "\n\n" + "\n".join([*jobs, self.cluster.logs()])


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """The ``$ command`` lines of a console block (with the lines a ``\\`` continues them on), each with the
    output lines under it."""
    commands: list[tuple[str, list[str]]] = []
    continued = False
    for line in text.splitlines():
        if continued:
            commands[-1] = (commands[-1][0][:-1].rstrip() + " " + line.strip(), [])
        elif line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
        else:
            raise AssertionError(f"output before any '$ command': {line!r}")
        continued = not commands[-1][1] and commands[-1][0].endswith("\\")
    return commands
