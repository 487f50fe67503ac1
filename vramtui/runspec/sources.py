"""Where a model comes from: a config.json or a checkpoint folder, read without torch."""

from __future__ import annotations

import json
from pathlib import Path

from vramtui.errors import UsageError

# Files a checkpoint's tokenizer can come from (any one of them makes a tokenizer).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "spiece.model",
    "vocab.json",
    "tokenizer_config.json",
)


def read_config_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", field="path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}", field="path") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a model config (expected a JSON object)", field="path")
    if "model_type" not in data:
        raise UsageError(
            f"{path} is not a transformers config: it has no 'model_type'", field="path"
        )
    return data


def max_positions(config: dict[str, object]) -> int | None:
    """The longest sequence a config allows, where it says."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def read_config_source(path: str | None) -> dict[str, object]:
    """The config.json of `--config PATH` (a file, or a folder holding one)."""
    if not path:
        raise UsageError("--config needs a path to a config.json", field="path")
    target = Path(path).expanduser()
    if target.is_dir():
        target = target / "config.json"
    if not target.is_file():
        raise UsageError(f"config file not found: {path}", field="path")
    return read_config_json(target)


def _looks_like_hub_id(path: str) -> bool:
    return path.count("/") == 1 and not path.startswith((".", "/", "~"))


def read_checkpoint(
    path: str | None, *, allow_pickle: bool, allow_download: bool
) -> dict[str, object] | None:
    """A checkpoint folder's config.json, checked for safe weights; None for a hub id
    that may be downloaded (nothing can be read before the engine fetches it)."""
    if not path:
        raise UsageError("--checkpoint needs a folder or a hub id", field="path")
    folder = Path(path).expanduser()
    if folder.exists():
        if not folder.is_dir():
            raise UsageError(f"checkpoint must be a folder with config.json: {path}", field="path")
        config = folder / "config.json"
        if not config.is_file():
            raise UsageError(f"not a checkpoint folder (no config.json): {path}", field="path")
        has_safe = any(folder.glob("*.safetensors"))
        has_pickle = any(folder.glob("*.bin")) or any(folder.glob("*.pt"))
        if not has_safe and has_pickle and not allow_pickle:
            raise UsageError(
                f"{path} has only pickle (.bin) weights, which can run code when "
                "loaded; pass --allow-pickle if you trust it",
                field="path",
            )
        return read_config_json(config)
    if not _looks_like_hub_id(path):
        raise UsageError(f"checkpoint folder not found: {path}", field="path")
    if not allow_download:
        raise UsageError(
            f"checkpoint {path!r} is not a local folder; "
            "pass --allow-download to fetch it from the hub",
            field="path",
        )
    return None


def has_tokenizer(path: str) -> bool | None:
    """Whether a local checkpoint folder holds a tokenizer; None when it is not local."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return None
    return any((folder / name).is_file() for name in TOKENIZER_FILES)
