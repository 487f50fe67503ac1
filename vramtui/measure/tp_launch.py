"""How a tensor-parallel run is launched: torch's elastic launcher (`torchrun`), its
command line, the checks made before it starts, and how its failures read.

`--tp N` is the whole tensor-parallel size; across `--nnodes M` nodes each node's
launcher starts N/M ranks. `--nnodes`, `--node-rank` and `--rdzv-endpoint` are handed
to the launcher unchanged (its static rendezvous: node 0 serves the store on the
endpoint's port, ranks numbered node by node). On one node without an endpoint the
launcher runs standalone, on a free port of its own.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from vramtui.errors import UsageError
from vramtui.measure.engine.tp_wire import ENGINE_MODULE

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")


@dataclass(frozen=True)
class TpLaunch:
    """One node's share of a tensor-parallel run."""

    tp: int
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None  # host:port of node 0's rendezvous store
    rdzv_timeout_s: int | None = None  # how long to wait for every node (launcher: 600)

    @property
    def nproc_per_node(self) -> int:
        return self.tp // self.nnodes

    @property
    def first_rank(self) -> int:
        """The global rank of this node's first rank."""
        return self.node_rank * self.nproc_per_node

    def check(self) -> None:
        """One line and exit 2 for what the launcher would refuse or hang on."""
        if self.tp < 1:
            raise UsageError(f"--tp must be 1 or more, got {self.tp}", field="tp")
        if self.nnodes < 1 or self.tp % self.nnodes:
            raise UsageError(
                f"--tp {self.tp} does not split over --nnodes {self.nnodes}: each node runs "
                "the same number of ranks",
                field="tp",
            )
        if not 0 <= self.node_rank < self.nnodes:
            raise UsageError(f"--node-rank {self.node_rank} is not below --nnodes {self.nnodes}")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise UsageError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT (node 0's)")
        if self.rdzv_endpoint:
            host, port = split_endpoint(self.rdzv_endpoint)
            if self.node_rank == 0 and host in LOCAL_HOSTS and port_in_use(host, port):
                raise UsageError(
                    f"--rdzv-endpoint {self.rdzv_endpoint}: port {port} is in use; pick a free port"
                )

    def command(self, python: str, log_dir: str) -> list[str]:
        """The launcher's command line for this node; each rank's output in `log_dir`."""
        command = [python, "-m", "torch.distributed.run"]
        command += ["--nproc-per-node", str(self.nproc_per_node), "--max-restarts", "0"]
        command += ["--log-dir", log_dir, "--redirects", "3"]
        if self.rdzv_endpoint is None:
            command += ["--standalone"]
        else:
            command += ["--nnodes", str(self.nnodes), "--node-rank", str(self.node_rank)]
            command += ["--rdzv-endpoint", self.rdzv_endpoint]
            if self.rdzv_timeout_s is not None:
                command += ["--rdzv-conf", f"timeout={self.rdzv_timeout_s}"]
        return command + ["-m", ENGINE_MODULE]


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--rdzv-endpoint must be HOST:PORT, got {endpoint!r}")
    return host.strip("[]"), int(port)


def port_in_use(host: str, port: int) -> bool:
    """Whether something here already listens on `port` (the store could not bind it)."""
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        probe.bind((host if host != "localhost" else "127.0.0.1", port))
    except OSError:
        return True
    finally:
        probe.close()
    return False


_TIMEOUT = re.compile(r"timed out|TimeoutError|RendezvousTimeout|DistStoreError", re.I)
_IN_USE = re.compile(r"address already in use|EADDRINUSE", re.I)
_FAILED_RANK = re.compile(r"exitcode\s*:\s*(-?\d+)\s*\(pid:\s*(\d+)\)")


def launch_failure(launch: TpLaunch, log: str) -> UsageError | None:
    """What a launcher that ended before any rank started says, as one line (exit 2):
    the rendezvous port in use, or the rendezvous timed out; None for anything else."""
    where = launch.rdzv_endpoint or "the standalone rendezvous"
    if _IN_USE.search(log):
        return UsageError(f"--rdzv-endpoint {where}: port in use")
    if _TIMEOUT.search(log):
        waited = f" after {launch.rdzv_timeout_s} s" if launch.rdzv_timeout_s else ""
        return UsageError(
            f"rendezvous at {where} timed out{waited}: not every node joined "
            f"({launch.nnodes} expected)"
        )
    return None


def exit_codes(log: str) -> dict[int, int]:
    """The launcher's error report: the exit code of each failed rank, by PID."""
    return {int(pid): int(code) for code, pid in _FAILED_RANK.findall(log)}
