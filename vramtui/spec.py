"""What to run: the RunSpec, checked before any model is built."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from vramtui.catalogue import CATALOGUE, DTYPE_BYTES, lookup
from vramtui.errors import UsageError

SOURCES = ("architecture", "config", "checkpoint")
ATTENTION = ("sdpa", "eager")
DTYPES = tuple(DTYPE_BYTES)


@dataclass
class RunSpec:
    """One generation run. `dtype=None` and `device='auto'` are resolved later."""

    model: str = "opt-125m"
    source: str = "architecture"  # architecture | config | checkpoint
    path: str | None = None  # config.json (source=config) or folder / hub id (checkpoint)
    tokens: int = 200
    prompt_tokens: int = 8
    prompt: str | None = None
    batch: int = 1
    dtype: str | None = None
    attn: str = "sdpa"
    device: str = "auto"
    seed: int = 0
    allow_download: bool = False
    allow_pickle: bool = False
    # torch 2.11 on Hopper picks cuDNN for sdpa, which builds a graph for every
    # new sequence length: a first pass through 2000 tokens runs ~9x slower
    # (benchmarks/results/cudnn_sdpa.md). Off unless asked for.
    cudnn_sdpa: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown run spec fields: {', '.join(unknown)}")
        return cls(**data)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        return self.model if self.source == "architecture" else f"{self.model} ({self.source})"


def resolve_dtype(dtype: str | None, backend: str) -> str:
    """float16 on GPUs by default, float32 on the CPU."""
    if dtype is None:
        return "float32" if backend == "cpu" else "float16"
    return dtype


def _read_config_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a model config (expected a JSON object)")
    if "model_type" not in data:
        raise UsageError(f"{path} is not a transformers config: it has no 'model_type'")
    return data


def max_positions(config: dict[str, object]) -> int | None:
    """The longest sequence a config allows, where it says."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_config_source(spec: RunSpec) -> dict[str, object] | None:
    """The config.json a spec builds from, when it can be read without the hub."""
    if spec.source == "config":
        if not spec.path:
            raise UsageError("--config needs a path to a config.json")
        path = Path(spec.path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise UsageError(f"config file not found: {spec.path}")
        return _read_config_json(path)
    if spec.source == "checkpoint":
        if not spec.path:
            raise UsageError("--checkpoint needs a folder or a hub id")
        folder = Path(spec.path).expanduser()
        if folder.exists():
            if not folder.is_dir():
                raise UsageError(f"checkpoint must be a folder with config.json: {spec.path}")
            config = folder / "config.json"
            if not config.is_file():
                raise UsageError(f"not a checkpoint folder (no config.json): {spec.path}")
            has_safe = any(folder.glob("*.safetensors"))
            has_pickle = any(folder.glob("*.bin")) or any(folder.glob("*.pt"))
            if not has_safe and has_pickle and not spec.allow_pickle:
                raise UsageError(
                    f"{spec.path} has only pickle (.bin) weights, which can run code when "
                    "loaded; pass --allow-pickle if you trust it"
                )
            return _read_config_json(config)
        looks_like_id = spec.path.count("/") == 1 and not spec.path.startswith((".", "/", "~"))
        if not looks_like_id:
            raise UsageError(f"checkpoint folder not found: {spec.path}")
        if not spec.allow_download:
            raise UsageError(
                f"checkpoint {spec.path!r} is not a local folder; "
                "pass --allow-download to fetch it from the hub"
            )
        return None
    return None


def validate(spec: RunSpec) -> dict[str, object] | None:
    """Check everything that can be checked without torch; return the config read."""
    if spec.source not in SOURCES:
        raise UsageError(f"unknown source {spec.source!r}; choose from {', '.join(SOURCES)}")
    if spec.tokens <= 0:
        raise UsageError(f"--tokens must be a positive number of new tokens, got {spec.tokens}")
    if spec.prompt_tokens <= 0 and not spec.prompt:
        raise UsageError(f"--prompt-tokens must be positive, got {spec.prompt_tokens}")
    if spec.batch <= 0:
        raise UsageError(f"--batch must be positive, got {spec.batch}")
    if spec.dtype is not None and spec.dtype not in DTYPES:
        raise UsageError(f"unknown dtype {spec.dtype!r}; choose from {', '.join(DTYPES)}")
    if spec.attn not in ATTENTION:
        raise UsageError(f"unknown attention {spec.attn!r}; choose from {', '.join(ATTENTION)}")
    config: dict[str, object] | None = None
    if spec.source == "architecture":
        info = lookup(spec.model)
        spec.model = info.name
        positions: int | None = info.positions
    else:
        config = load_config_source(spec)
        positions = max_positions(config) if config else None
    if positions is not None and spec.prompt_tokens + spec.tokens > positions:
        raise UsageError(
            f"prompt ({spec.prompt_tokens}) + new tokens ({spec.tokens}) = "
            f"{spec.prompt_tokens + spec.tokens} exceeds the model's limit of {positions} positions"
        )
    return config


def known_model(name: str) -> bool:
    return name.strip().lower().removeprefix("facebook/") in CATALOGUE
