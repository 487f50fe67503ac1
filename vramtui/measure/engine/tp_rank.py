"""One tensor-parallel rank of an engine run, as torch's elastic launcher starts it.

Run as `python -m torch.distributed.run ... -m vramtui.measure.engine.tp_rank`: every
rank reads the RunSpec from the file the recorder wrote, connects to the recorder's
socket (tp_wire), and runs the engine there, with the model sharded by transformers'
tp_plan. Every rank calls generate with the same prompt (tensor parallelism runs each
step on all ranks together) and measures its own process and device.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from vramtui.measure.engine.engine_main import _on_term, quiet_library_warnings, run_and_flush
from vramtui.measure.engine.engine_run import Engine
from vramtui.measure.engine.tp_wire import EVENTS_ENV, SPEC_ENV, RankHello
from vramtui.runspec import RunSpec


class RankEngine(Engine):
    """The engine of one rank: the model is this rank's share of it."""

    def build(self, device: Any, dtype: str) -> Any:
        """This rank's share, loaded under transformers' tp_plan. At one rank (the
        launcher's WORLD_SIZE 1, from which transformers derives its tp_size) there is
        nothing to shard and transformers applies no plan: the model is built as a
        one-device run builds it, so that `--tp 1` measures what the launcher adds."""
        if one_rank():
            return super().build(device, dtype)
        from vramtui.measure.engine.tp_load import build_tp

        return build_tp(self.spec, device, dtype)


def one_rank() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) == 1


def rank_device(device: str, local_rank: int) -> str:
    """A GPU run's rank uses the GPU of its local rank; a CPU run stays on the CPU."""
    return f"cuda:{local_rank}" if device.startswith("cuda") else device


def this_rank() -> RankHello:
    env = os.environ
    return RankHello(
        rank=int(env["RANK"]),
        local_rank=int(env["LOCAL_RANK"]),
        world_size=int(env["WORLD_SIZE"]),
        node_rank=int(env.get("GROUP_RANK", "0")),
        pid=os.getpid(),
    )


def end_group() -> None:
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - the run is over; its figures are sent
        pass


def main() -> int:
    quiet_library_warnings()
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    me = this_rank()
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    link.connect(os.environ[EVENTS_ENV])
    # a line-buffered file on the socket (socket.makefile would hold lines back)
    out = os.fdopen(link.detach(), "w", buffering=1, encoding="utf-8")
    out.write(me.encode() + "\n")
    spec = RunSpec.from_dict(json.loads(Path(os.environ[SPEC_ENV]).read_text()))
    spec = replace(spec, device=rank_device(spec.device, me.local_rank))
    code = run_and_flush(RankEngine(spec, out.write), out)
    end_group()
    return code


if __name__ == "__main__":
    sys.stdout = sys.stderr
    os._exit(main())
