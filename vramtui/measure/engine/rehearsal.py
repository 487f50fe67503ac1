"""What a run imports, asked of a run: a tiny run in a throwaway fork.

transformers, accelerate and the libraries under them import some modules only when
a model is loaded or generates (tqdm's multiprocessing lock for the loader's progress
bar, for one), and which ones depends on their versions. An engine imports them
before it takes its spec, so that a spare handed a spec imports nothing: it forks a
child that runs a tiny OPT model on the CPU through the engine's own code, the child
reports the modules the run imported, and the engine imports those. Nothing else of
the run happens in the engine itself: no model, no allocation of the run's, no
thread pool (a process that forks engines must not have run torch's thread pools:
their threads do not survive a fork). The child sees no GPU (CUDA_VISIBLE_DEVICES is
empty) and reads no test faults; what it prints goes nowhere.

Best effort: where the platform cannot fork, or the child fails or takes longer than
REHEARSAL_S, the engine imports nothing more and the run imports what it needs.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import sys
import tempfile
from pathlib import Path

from vramtui.testing.faults import PREFIX as FAULTS_PREFIX

REHEARSAL_S = 120.0  # an upper bound on a busy machine, never a wait
TINY_OPT = {
    "model_type": "opt",
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "ffn_dim": 32,
    "vocab_size": 64,
    "max_position_embeddings": 32,
    "word_embed_proj_dim": 16,
    "pad_token_id": 1,
    "bos_token_id": 2,
    "eos_token_id": 2,
}


def rehearse() -> list[str]:
    """In this process: one tiny run on the CPU; the modules it imported, in order."""
    from vramtui.measure.engine.engine_run import Engine
    from vramtui.runspec import RunSpec

    before = set(sys.modules)
    with tempfile.TemporaryDirectory(prefix="vramtui-rehearsal-") as folder:
        config = Path(folder) / "config.json"
        config.write_text(json.dumps(TINY_OPT))
        spec = RunSpec(
            model="rehearsal", source="config", path=str(config), tokens=2, prompt_tokens=4,
            device="cpu",
        )  # fmt: skip
        Engine(spec, lambda line: None).run()
    return [name for name in list(sys.modules) if name not in before]


def _child(write_end: int) -> None:
    """The forked child: no GPU, no faults, no output; the list down the pipe."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    for name in [n for n in os.environ if n.startswith(FAULTS_PREFIX)]:
        del os.environ[name]
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    data = json.dumps(rehearse()).encode()
    while data:
        data = data[os.write(write_end, data) :]


def modules_a_run_imports(timeout: float = REHEARSAL_S) -> list[str]:
    """The modules a tiny run imports in a fork of this process; [] if it cannot say."""
    if not hasattr(os, "fork"):
        return []
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _child(write_end)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        return _read_list(read_end, timeout)
    finally:
        os.close(read_end)
        _end(pid)


def _read_list(read_end: int, timeout: float) -> list[str]:
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([read_end], [], [], timeout)
        if not ready:
            return []
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    try:
        names = json.loads(b"".join(chunks) or b"[]")
    except ValueError:
        return []
    return [str(name) for name in names] if isinstance(names, list) else []


def _end(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)  # done already, or past its time
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def import_what_a_run_imports() -> list[str]:
    """Import, here, each module a tiny run imported (those that import); their names."""
    done = []
    for name in modules_a_run_imports():
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an alias or a module of the run's own making
            continue
        done.append(name)
    return done
