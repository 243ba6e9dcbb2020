"""A closed stdout is the end of output, as Unix tools treat it: stop quietly, exit status 141; a terminal that went
away (it hung up: the ssh session dropped) is too, exit status 129.

A C tool that writes into a pipe whose reader has left (``pipeline-run ... | head -1``) is killed
by SIGPIPE, silently. Python ignores SIGPIPE, so the write raises BrokenPipeError instead, and
with no care each print prints a traceback, and the interpreter's last flush of stdout another.

A terminal that hung up fails each write with EIO instead: the same news, the kernel's SIGHUP at the same time.

Here the first BrokenPipeError on a closed stdout (or stderr), or EIO on one that hung up, ends the output: the closed
stream is pointed at /dev/null, so later writes and the final flush succeed and write nothing, and the listeners are
told (``pipeline-run`` then stops its run as if SIGPIPE, or SIGHUP, had arrived). Every console
script's ``main`` is wrapped in ``console_script``, which turns what is left of the error into the
exit status 141 (128 + SIGPIPE, the status a shell shows for a tool that SIGPIPE killed), or 129 (128 + SIGHUP) for a
terminal that hung up.

``console_script`` also puts a ``QuietFile`` under ``sys.stdout`` and ``sys.stderr``: the write that finds one closed
ends the output there and writes nothing, as every later write does, instead of raising into a
step's ``run()``. So a step that prints (``Printer``) does not fail on the first message after the
reader left: a closed stdout is not a failure of any message. A run's worker processes share its
stdout; the one whose write finds it closed sends SIGPIPE to the run (``tell_run_at_end``), which
then stops as if its own write had found it (``pipeline.cli.signals``). A stdout that takes no more (a full disk) is
a failure of the message whose output was lost, and ``console_script`` says it in one line at the command's end; a
worker process notes it in the run's private directory (``tell_run_at_end``), which the run reads as it ends.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import select
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TextIO, TypeVar

#: The exit status of a command whose output was closed: 128 + SIGPIPE.
EXIT_STATUS = 128 + signal.SIGPIPE
#: The streams whose closing ends the output: stdout and stderr.
OUTPUT_FDS = (1, 2)

_P = ParamSpec("_P")
_R = TypeVar("_R")

_ended = threading.Event()
_lock = threading.Lock()
_listeners: list[Callable[[], None]] = []
_signal = signal.SIGPIPE  # what the end of output stands for: SIGHUP if a terminal hung up
#: The file, in the private directory a run shares with its worker processes, where one of them notes that stdout took
#: no more: its writes are the run's output too, and the run says the loss at its end.
LOST_OUTPUT_FILE = "stdout-lost"
#: Seconds a process that leaves gives stdout and stderr to take what they hold (flush_output).
OUTPUT_EXIT_SECONDS = 1.0
_lost: int | None = None  # the errno of the first write into stdout that took no more, here or in a worker process
_lost_file: str | None = None  # in a worker process sharing its run's stdout: where to tell the run of a loss


def _forget_in_child() -> None:
    """A forked child (engine.zygote) starts as a new process: its output has not ended, nobody listens yet."""
    global _ended, _lock, _signal, _lost, _lost_file
    _ended = threading.Event()
    _lock = threading.Lock()
    _signal = signal.SIGPIPE
    _lost = _lost_file = None
    _listeners.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def closed_fds() -> list[int]:
    """Which of stdout and stderr are pipes (or sockets) whose reader has gone, or terminals that hung up."""
    poller = select.poll()
    for fd in OUTPUT_FDS:
        poller.register(fd, select.POLLOUT)
    # A pipe without a reader polls as an error (Linux) or a hang-up (BSD, macOS), a terminal that hung up as both; a
    # closed fd as invalid.
    return [fd for fd, events in poller.poll(0) if events & (select.POLLERR | select.POLLHUP)]


def caused_by_closed_output(error: BaseException) -> bool:
    """Whether ``error`` is a write into a closed stdout or stderr (or one that hung up); if so the output ends now."""
    # A pipe whose reader has left, or a terminal that hung up.
    if not isinstance(error, BrokenPipeError) and not (isinstance(error, OSError) and error.errno == errno.EIO):
        return False
    if _ended.is_set():
        return True  # a write that raced with the first one
    if not closed_fds():
        # Some other pipe (the step's own failure), unless another thread has just pointed the closed stream at
        # /dev/null: end_output() holds the lock from then until the output is marked ended.
        with _lock:
            return _ended.is_set()
    end_output()
    return True


def _to_devnull(fds: Iterable[int]) -> None:
    """Make each of ``fds`` a descriptor of /dev/null, closed or not before: what is written there goes nowhere."""
    fds = list(fds)
    devnull = os.open(os.devnull, os.O_WRONLY)  # a closed one of ``fds`` if there is one: the lowest free number
    try:
        for fd in fds:
            if fd != devnull:
                os.dup2(devnull, fd)
    finally:
        if devnull not in fds:
            os.close(devnull)


def end_output() -> None:
    """End the output (once): later writes to the closed streams go to /dev/null; tell the listeners."""
    global _signal
    with _lock:
        if _ended.is_set():
            return
        closed = closed_fds()
        # Looked at before they become /dev/null, a character device too.
        _signal = signal.SIGHUP if any(stat.S_ISCHR(os.fstat(fd).st_mode) for fd in closed) else signal.SIGPIPE
        _to_devnull(closed)
        _ended.set()
        listeners = list(_listeners)
    for listener in listeners:
        listener()


@contextmanager
def listening(listener: Callable[[], None]) -> Iterator[None]:
    """Within ``with``, ``listener()`` is called (once, in the thread that saw it) when the output ends."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def ended() -> bool:
    """Whether the output has ended (a write found stdout or stderr closed)."""
    return _ended.is_set()


def ending_signal() -> signal.Signals:
    """The signal the end of output stands for: SIGHUP if it was a terminal that hung up, else SIGPIPE."""
    return signal.Signals(_signal)


def exit_status() -> int:
    """The exit status of a command whose output ended: 141 for a closed pipe, 129 for a terminal that hung up."""
    return 128 + _signal


def flush_output(timeout: float) -> None:
    """Flush stdout and stderr, waiting at most ``timeout`` seconds: a thread left behind may hold a stream's lock for
    ever, blocked in a write that nobody reads. With no thread to spare, what they hold is lost, not the exit."""
    flusher = threading.Thread(target=_flush_quietly, name="output-flush", daemon=True)
    try:
        flusher.start()
    except RuntimeError:  # no thread to spare
        return
    flusher.join(timeout)


def _flush_quietly() -> None:
    """Flush stdout and stderr; one that takes no more is a step's failure, said already."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # AttributeError: None, as under pythonw
            stream.flush()


def lose_output(code: int) -> None:
    """Note that a write into stdout took no more (``code``, its errno): the command says so at its end (a worker
    process tells its run)."""
    global _lost
    if _lost is not None:
        return
    _lost = code
    if _lost_file is not None:
        # "x": another worker process told it first; the run's directory gone: nobody is left to tell.
        with contextlib.suppress(OSError), open(_lost_file, "x", encoding="ascii") as told:
            told.write(str(code))


def hear_lost_output(directory: str | os.PathLike[str]) -> None:
    """Take the loss of stdout that a worker process of this run noted in ``directory`` (LOST_OUTPUT_FILE) for this
    process's own."""
    with contextlib.suppress(OSError, ValueError):  # none noted
        lose_output(int(Path(directory, LOST_OUTPUT_FILE).read_text(encoding="ascii")))


class LostOutput(OSError):
    """A write into a stdout that takes no more (a full disk, /dev/full, EIO): told apart from the same error of any
    other file (a dead-letter file on the same full disk), which is not stdout's to report."""


class QuietFile(io.FileIO):
    """stdout's (or stderr's) file: a write into it once its reader has gone ends the output and writes nothing."""

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        """Write ``data``; into a closed stdout, nothing (the output ends), as every later write; into one that takes
        no more, a LostOutput."""
        try:
            return super().write(data)
        except OSError as error:
            if caused_by_closed_output(error):
                return memoryview(data).nbytes  # what BufferedWriter must hear to drop it from its buffer
            if error.errno not in _LOST_OUTPUT or self.fileno() != 1:  # stderr has nowhere to say it
                raise
            lost = error
            lose_output(lost.errno)
        # Raised here, out of the except clause: its context is what was being handled around the write (the SystemExit
        # whose status console_script keeps), not the OSError it stands for.
        raise LostOutput(lost.errno, lost.strerror)


def _quiet_copy(stream: TextIO | None, fd: int = 1) -> TextIO | None:
    """A text stream like ``stream`` on a QuietFile, if ``stream`` is the process's own stdout (or ``fd``); else None.

    Only the real file descriptor ``fd`` is wrapped: a test's captured stdout, or a stream that is
    already quiet, is left as it is.
    """
    if not isinstance(stream, io.TextIOWrapper):
        return None
    buffered = not isinstance(stream.buffer, io.FileIO)  # python -u (PYTHONUNBUFFERED): no buffer layer
    raw = getattr(stream.buffer, "raw", None) if buffered else stream.buffer
    if type(raw) is not io.FileIO or raw.fileno() != fd:
        return None
    stream.flush()
    # Always a buffer, even for python -u: print() writes its text and its end apart, and each write into
    # QuietFile (Python code) lets another thread in between; a buffer makes a line one write. Unbuffered
    # output is then written a line at a time.
    return io.TextIOWrapper(io.BufferedWriter(QuietFile(fd, "w", closefd=False)), encoding=stream.encoding,
                            errors=stream.errors, line_buffering=stream.line_buffering or not buffered,
                            write_through=stream.write_through)


#: The quiet copy made of each stdout, kept for the life of the process, and used again: CPython 3.11's print()
#: holds sys.stdout without a reference of its own, so a copy freed as ``with`` ended crashed a thread of a step
#: still printing (a segmentation fault after the report, one run in 40).
_kept: dict[int, tuple[TextIO, TextIO]] = {}


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """Within ``with``, ``sys.stdout`` and ``sys.stderr`` write nothing into a closed (or hung-up) stream, and end the
    output, instead of raising."""
    with _quiet("stdout", 1), _quiet("stderr", 2):
        yield


@contextmanager
def _quiet(name: str, fd: int) -> Iterator[None]:
    """Within ``with``, ``sys.<name>`` (on ``fd``) is quiet."""
    original = getattr(sys, name)
    kept = _kept.get(id(original))
    quiet = kept[1] if kept is not None and kept[0] is original else _quiet_copy(original, fd)
    if quiet is None:
        yield
        return
    _kept[id(original)] = (original, quiet)
    setattr(sys, name, quiet)
    try:
        yield
    finally:
        quiet.flush()
        setattr(sys, name, original)


def tell_run_at_end(run: int, parent: int, directory: str | os.PathLike[str]) -> None:
    """In a worker process that shares its run's stdout: make ``sys.stdout`` quiet for good, and send the run
    (process ``run``) SIGPIPE when the output ends here, as the kernel would send it to a C tool, while this
    process's parent (the run, or the zygote it was forked from) is still ``parent``. A terminal that hung up is told
    as SIGPIPE too: the run finds which it was. A stdout that takes no more is noted in the run's private
    ``directory`` (hear_lost_output)."""
    global _lost_file
    _lost_file = os.path.join(directory, LOST_OUTPUT_FILE)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        quiet = _quiet_copy(getattr(sys, name), fd)
        if quiet is not None:
            setattr(sys, name, quiet)

    def tell() -> None:
        if os.getppid() == parent:  # not an unrelated process that inherited an orphan
            os.kill(run, signal.SIGPIPE)

    with _lock:
        _listeners.append(tell)


def console_script(main: Callable[_P, _R]) -> Callable[_P, _R]:
    """Wrap a console script's ``main``: a closed stdout or stderr ends it quietly with EXIT_STATUS (129 for a terminal
    that hung up); a stdout that takes no more (a LostOutput) is one line and exit status 1.

    A command whose output ended although it went on to exit 0 (``--help``, whose text was cut)
    exits with EXIT_STATUS too, as a tool that SIGPIPE killed: the reader did not get all of it.
    """

    @functools.wraps(main)
    def script(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        _open_closed_streams()
        try:
            try:
                with quiet_stdout():
                    result = main(*args, **kwargs)
            except SystemExit as exit_:
                if ended() and exit_.code in (0, None):
                    sys.exit(exit_status())
                raise
            finally:
                # Here, where it can be caught: at the interpreter's exit it would print a traceback.
                if sys.stdout is not None:
                    sys.stdout.flush()
                if _lost is not None:  # a write that failed earlier, its text dropped (or in a worker process)
                    raise LostOutput(_lost, os.strerror(_lost))
        except LostOutput as error:  # a stdout that takes no more (a full disk, /dev/full; EIO): what is left is lost
            _discard_stdout()
            before = error.__context__.code if isinstance(error.__context__, SystemExit) else 0
            print(f"{_command()}: error: cannot write to stdout: {error.strerror}", file=sys.stderr)
            sys.exit(before if isinstance(before, int) and before else 1)
        except OSError as error:
            if not caused_by_closed_output(error):
                raise
            sys.exit(exit_status())
        if ended():
            sys.exit(exit_status())
        return result

    return script


#: The errors of a write into a stdout that takes no more: a full file system, a failing device, a quota.
_LOST_OUTPUT = (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG)


def _open_closed_streams() -> None:
    """Point a stdout or stderr that the command was started without (``>&-``) at /dev/null: what is written there is
    lost, as into /dev/null, rather than failing each print, and no socket or file of the command takes its number
    (where a library's or a child's writes to fd 1 or 2 would land)."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            _to_devnull([fd])
            setattr(sys, name, open(fd, "w", encoding="utf-8", closefd=False))  # noqa: SIM115 (the process's own)


def _discard_stdout() -> None:
    """What stdout still holds goes to /dev/null: the interpreter's last flush would fail again (exit status 120)."""
    _to_devnull([1])
    with contextlib.suppress(OSError):
        sys.stdout.flush()


def _command() -> str:
    """The command's name, as its lines begin: its console script's (pipeline-run), or the package that ``python -m``
    ran (pipeline)."""
    path = sys.argv[0] if sys.argv and sys.argv[0] else "pipeline"
    name = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) or name if name == "__main__.py" else name
