"""Shared fixtures: the GUI tests' window, offscreen (no display needed); a private config directory; a short
temporary directory; an in-process pipeline-run."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pipeline.cli.run import PipelineRun
    from tests.remote_helpers import Launcher

# pytest rewrites the asserts of test modules only: the helper modules' asserts explain their failures too,
# as they did when the helpers lived in test modules (registered before any test module imports them).
pytest.register_assert_rewrite(*sorted(f"tests.{path.stem}" for path in Path(__file__).parent.glob("*_helpers.py")))

# Read when pytest-qt makes the QApplication, after collection.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True, scope="session")
def private_config_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The user's key pairs live under XDG_CONFIG_HOME: the tests (and their subprocesses) get their own."""
    before = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config-home"))
    yield
    if before is None:
        del os.environ["XDG_CONFIG_HOME"]
    else:
        os.environ["XDG_CONFIG_HOME"] = before


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """The test's processes (a run that listens, its remote workers), killed at its end if still running."""
    from tests.remote_helpers import Launcher  # once the helpers' asserts are registered for rewriting (above)

    with Launcher(tmp_path) as launcher:
        yield launcher


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A new directory with a short path, for TMPDIR: a run's ipc paths (in its private directory) must fit in
    107 bytes."""
    temp = Path(tempfile.mkdtemp(prefix="t-", dir="/tmp"))
    yield temp
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def app() -> Iterator[PipelineRun]:
    """A PipelineRun to call in-process; the logging it sets up is undone afterwards."""
    from pipeline.cli.run import PipelineRun

    loggers = [logging.getLogger(name) for name in ("pipeline", PipelineRun.__name__)]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    yield PipelineRun()
    for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture
def window(qtbot: Any) -> Iterator[Any]:
    """The monitor on a free loopback port, in plaintext (the tests send with plain PUB sockets), offscreen."""
    from gui.window import MainWindow  # only the GUI tests pay for importing Qt

    window = MainWindow("127.0.0.1", 0)
    qtbot.addWidget(window)
    window.show()
    yield window
    window.shutdown()


@pytest.fixture
def secure_window(qtbot: Any) -> Iterator[Any]:
    """The monitor as pipeline-gui starts by default: a CURVE server with the user's own key pair."""
    from gui.window import MainWindow
    from pipeline import auth

    own = auth.ensure_own_key_pair()
    window = MainWindow("127.0.0.1", 0, auth.ServerKeys(own, {own.public: own.name}))
    qtbot.addWidget(window)
    window.show()
    yield window
    window.shutdown()


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A single-node SLURM cluster for the session (tests/slurm_cluster.py); skips, saying why, where there is none."""
    from tests.slurm_cluster import ClusterError, SlurmCluster, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        try:
            cluster.start()
        except (ClusterError, OSError) as err:
            pytest.skip(f"cannot start a SLURM cluster here: {err}")
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def slurm(slurm_cluster: Any) -> Iterator[Any]:
    """The session's SLURM cluster, with every job a test left cancelled at its end."""
    yield slurm_cluster
    slurm_cluster.cancel_all()
