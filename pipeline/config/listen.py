"""The run's side of remote workers, checked before anything runs: where it listens, and its keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.auth.curve import ServerKeys
from pipeline.auth.keys import authorized_keys, load_key_pair
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.config.model import PipelineConfig

def remote_keys(config: PipelineConfig, listen: str, mode: str, server_key: str, authorized: str) -> ServerKeys | None:
    """The run's key pair and the workers' keys it lets in; None without ``listen``.

    Listening without both keys is refused on any address: a loopback port is open to every user
    of the host. A step without local workers (nb_thread 0) needs somewhere for workers to join.
    """
    source = config.source
    for step in config.steps.values():
        if step.nb_thread == 0 and step.nb_process:
            raise ConfigError(source, f"{step.key}.nb_thread", "expected at least 1 with nb_process (the threads "
                              "of each worker process)")
        if step.nb_thread == 0 and not listen:
            raise ConfigError(source, f"{step.key}.nb_thread", "0 means only remote workers: expected "
                              "Pipeline.listen too, for them to join")
    if not listen:
        return None
    settings = config.setting_source("Pipeline", "listen")  # the file's, or the command line's --Pipeline.listen
    if mode != "threads":
        raise ConfigError(*settings, "remote workers join threads mode runs only (expected Pipeline.mode "
                          "'threads')")
    if not server_key or not authorized:
        raise ConfigError(*settings, "listening needs Pipeline.server_key and Pipeline.authorized_keys: "
                          "every remote worker must authenticate (pipeline-keys generate makes the keys)")
    return ServerKeys(load_key_pair(server_key, "Pipeline.server_key"),
                      authorized_keys(authorized, "Pipeline.authorized_keys"))
