"""The run's side of remote workers, checked before anything runs: where it listens, and its keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.auth.curve import ServerKeys
from pipeline.auth.keys import authorized_keys, load_key_pair
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.config.model import PipelineConfig
    from pipeline.pipeline import Pipeline

#: Where the settings come from, in error messages.
_SETTINGS = "Pipeline.listen"


def remote_keys(pipeline: Pipeline, config: PipelineConfig) -> ServerKeys | None:
    """The run's key pair and the workers' keys it lets in; None without ``listen``.

    Listening without both keys is refused on any address: a loopback port is open to every user
    of the host. A step without local workers (nb_thread 0) needs somewhere for workers to join.
    """
    source = config.source
    for step in config.steps.values():
        if step.nb_thread == 0 and step.nb_process:
            raise ConfigError(source, f"{step.key}.nb_thread", "expected at least 1 with nb_process (the threads "
                              "of each worker process)")
        if step.nb_thread == 0 and not pipeline.listen:
            raise ConfigError(source, f"{step.key}.nb_thread", "0 means only remote workers: expected "
                              "Pipeline.listen too, for them to join")
    if not pipeline.listen:
        return None
    if pipeline.mode != "threads":
        raise ConfigError(source, _SETTINGS, "remote workers join threads mode runs only (expected Pipeline.mode "
                          "'threads')")
    if not pipeline.server_key or not pipeline.authorized_keys:
        raise ConfigError(source, _SETTINGS, "listening needs Pipeline.server_key and Pipeline.authorized_keys: "
                          "every remote worker must authenticate (pipeline-keys generate makes the keys)")
    return ServerKeys(load_key_pair(pipeline.server_key, "Pipeline.server_key"),
                      authorized_keys(pipeline.authorized_keys, "Pipeline.authorized_keys"))
