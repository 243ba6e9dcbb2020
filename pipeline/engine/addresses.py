"""Where each step's router listens, unique per run so that runs in one process never meet."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Addresses:
    """The inproc endpoints of one run."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def inbox(self, step: str) -> str:
        """Where senders push messages for ``step``."""
        return f"inproc://{self.run_id}/{step}/in"

    def work(self, step: str) -> str:
        """Where ``step``'s workers ask its router for work."""
        return f"inproc://{self.run_id}/{step}/work"
