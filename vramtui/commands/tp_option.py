"""The tensor-parallel flags of `run` (and `estimate`): --tp and the launcher's own."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from vramtui.commands.common import whole_number
from vramtui.errors import UsageError
from vramtui.measure.recorder import Recorder
from vramtui.measure.tp_launch import TpLaunch
from vramtui.runspec import ResolvedRun

if TYPE_CHECKING:
    from vramtui.sweep.sweep_runner import RecorderFactory


def add_tp_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "tensor parallel", "shard the model over ranks with transformers' tp_plan (torchrun)"
    )
    group.add_argument(
        "--tp",
        type=whole_number,
        default=None,
        metavar="N",
        help="tensor parallel size: N engine ranks under torch.distributed.run, one per "
        "GPU (gloo on the CPU); the model needs a tp_plan (Llama, Qwen, Mistral, ...)",
    )
    group.add_argument("--nnodes", type=whole_number, default=1, help="nodes (launcher agents)")
    group.add_argument("--node-rank", type=int, default=0, help="this node's rank")
    group.add_argument(
        "--rdzv-endpoint",
        default=None,
        metavar="HOST:PORT",
        help="node 0's rendezvous store (handed to the launcher)",
    )
    group.add_argument(
        "--rdzv-timeout",
        type=whole_number,
        default=None,
        metavar="S",
        help="how long to wait for every node (the launcher's default: 600 s)",
    )


def tp_launch_of(args: argparse.Namespace) -> TpLaunch | None:
    """The launch the flags ask for, checked; None without --tp."""
    if args.tp is None:
        return None
    launch = TpLaunch(args.tp, args.nnodes, args.node_rank, args.rdzv_endpoint, args.rdzv_timeout)
    launch.check()
    return launch


def add_bench_tp_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tp",
        type=whole_number,
        default=None,
        metavar="N",
        help="run every cell tensor parallel over N ranks on this node (torchrun; the "
        "table shows rank 0's figures)",
    )


def tp_cells(args: argparse.Namespace) -> RecorderFactory | None:
    """How `bench --tp N` records each cell (its launcher, rank 0's session in the
    table); None without --tp. Checked before anything runs."""
    if args.tp is None:
        return None
    if args.devices:
        raise UsageError("--tp runs each cell on N devices of its own; leave out --devices")
    launch = TpLaunch(args.tp)
    launch.check()

    def make(run: ResolvedRun, extra_env: dict[str, str] | None) -> Recorder:
        from vramtui.measure.ranks import LeadRecorder

        return LeadRecorder(run, launch, extra_env)

    return make
