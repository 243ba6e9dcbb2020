"""Where each step's router listens, unique per run so that runs in one process never meet."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Addresses:
    """The endpoints of one run: inproc between its threads, ipc to its worker processes.

    The ipc endpoints live in ``ipc_dir``, a directory only the run's user can enter (0700), so
    only that user's processes can connect to them.
    """

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    ipc_dir: str = ""

    def inbox(self, step: str) -> str:
        """Where senders push messages for ``step``."""
        return f"inproc://{self.run_id}/{step}/in"

    def work(self, step: str) -> str:
        """Where ``step``'s workers ask its router for work."""
        return f"inproc://{self.run_id}/{step}/work"

    def notices(self, step: str) -> str:
        """Where ``step``'s router hears that one of its worker processes died."""
        return f"inproc://{self.run_id}/{step}/notices"

    def outside(self, step: str) -> str:
        """Where ``step``'s worker processes ask its router for work (ipc: short paths, not step names)."""
        return f"ipc://{self.ipc_dir}/{uuid.uuid5(uuid.NAMESPACE_OID, step).hex[:12]}"

    def host(self) -> str:
        """Where worker processes ask what to run, and exchange heartbeats with the run."""
        return f"ipc://{self.ipc_dir}/host"
