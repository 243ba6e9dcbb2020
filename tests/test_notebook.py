"""Steps defined in a Jupyter notebook, run in worker processes from a real kernel: the kernel's own threads (its
channels, heartbeat, history, the readers of files 1 and 2) are safe to fork beside, so the notebook's classes reach
the worker processes as a script's do, where the run refused them ("define it in a module")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import ROOT

jupyter_client = pytest.importorskip("jupyter_client.manager")
pytest.importorskip("ipykernel")

#: The notebook's cells: a step class of its own in 2 worker processes, and a run of it.
DEFINE = """
from pipeline import Component, Pipeline

class Square(Component):
    def run(self, n):
        return n * n

got = []

class Keep(Component):
    def run(self, n):
        got.append(n)

def document(count):
    return {"version": 1, "Pipeline": {"gui": False, "progress": False,
        "producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter", "next_steps": "S"},
        "stagers_conf": [{"name": "S", "module": "__main__", "class": "Square", "nb_process": 2, "next_steps": "C"}],
        "consumer_conf": {"name": "C", "module": "__main__", "class": "Keep"}}, "Counter": {"count": count}}
"""
RUN = """
got.clear()
report = Pipeline.from_config(document(5)).run()
print("exit", report.exit_status, sorted(got))
"""


def execute(client: object, code: str) -> tuple[str, list[str]]:
    """Run ``code`` in the kernel: what it printed on stdout, and its errors."""
    msg_id = client.execute(code)
    printed, errors = [], []
    while True:
        message = client.get_iopub_msg(timeout=90)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream" and content["name"] == "stdout":
            printed.append(content["text"])
        elif kind == "error":
            errors.append(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(printed), errors


@pytest.mark.timeout(240)
def test_a_notebooks_step_class_runs_in_worker_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))  # the kernel's files, and its history
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    manager, client = jupyter_client.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        assert execute(client, DEFINE) == ("", [])
        for _ in range(2):  # a second run in the same kernel too
            printed, errors = execute(client, RUN)
            assert errors == []
            assert "exit 0 [0, 1, 4, 9, 16]" in printed.splitlines()
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
