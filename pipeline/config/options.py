"""The settings a run takes from ``Pipeline``'s traits, as plain frozen values its threads can read."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from traitlets import HasTraits

if TYPE_CHECKING:
    from pipeline.auth.curve import ServerKeys

_Settings = TypeVar("_Settings")


def settings_from(cls: type[_Settings], traits: HasTraits, **values: Any) -> _Settings:
    """A ``cls`` (a dataclass) whose every field is the trait of the same name of ``traits``, unless
    ``values`` gives it: one place turns traits into settings, so a field cannot be passed to the wrong slot."""
    fields = {field.name: values[field.name] if field.name in values else getattr(traits, field.name)
              for field in dataclasses.fields(cls) if field.name in values or traits.has_trait(field.name)}
    return cls(**fields)


@dataclass(frozen=True)
class RunOptions:
    """The failure and shutdown settings of one run (the Pipeline traits of the same names)."""

    max_failures: int = 0  # stop the run once this many messages failed in all (0: no limit)
    allow_failures: bool = False  # exit 0 despite failed messages (with on_error=skip)
    dead_letter: str = ""  # JSON-lines file for failed messages ("" : none)
    dead_letter_setting: tuple[str, str] = ("", "Pipeline.dead_letter")  # where it was given: (source, key) of errors
    replayed: str | None = None  # the dead-letter file the run replays (its dead_letter may be that very file)
    shutdown_timeout: float = 10.0  # seconds a stopping run may take before busy threads are left behind
    keep_freed_memory: bool = False  # tune malloc so large buffers are reused (see engine.allocator)
    heartbeat_interval: float = 1.0  # seconds between heartbeats of the run and its worker processes
    heartbeat_liveness: int = 5  # heartbeats missed before a worker process (or the run) is taken for dead
    max_redeliveries: int = 2  # a message running in this many dead workers fails instead of going round again
    max_worker_restarts: int = 3  # dead worker processes replaced per step
    listen: str = ""  # where remote workers connect ("": none)
    server_keys: ServerKeys | None = None  # the run's key pair and the workers' keys it lets in (with listen)
    worker_timeout: float = 60.0  # seconds a step without workers waits for a remote one
    fuse: bool = True  # run consecutive steps of the same worker processes fused (engine.fusion)
    fork_workers: bool = True  # worker processes fork from a copy of the run's process (engine.zygote)
