"""How a tensor-parallel rank and the recorder talk: no torch here.

The recorder listens on a Unix socket (its path in VRAMTUI_TP_EVENTS) and writes the
RunSpec to a file (VRAMTUI_TP_SPEC); torch's elastic launcher starts every rank with
that environment. Each rank connects, says who it is in one JSON line (`RankHello`),
then writes the engine's events, one JSON line each (vramtui.measure.events), until
it ends; the socket closes when the rank's process does, however it ends.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

EVENTS_ENV = "VRAMTUI_TP_EVENTS"
SPEC_ENV = "VRAMTUI_TP_SPEC"
ENGINE_MODULE = "vramtui.measure.engine.tp_rank"


@dataclass(frozen=True)
class RankHello:
    """A rank's first line: its global and local rank, the world size, its node, its PID."""

    rank: int
    local_rank: int
    world_size: int
    node_rank: int
    pid: int

    def encode(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def decode(cls, line: str) -> RankHello:
        data = json.loads(line)
        return cls(
            **{k: int(data[k]) for k in ("rank", "local_rank", "world_size", "node_rank", "pid")}
        )
