"""Build or load the model a RunSpec names, on its device and dtype."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from vramtui.errors import UsageError
from vramtui.measure.engine.quantize import quantization_config
from vramtui.measure.engine.random_weights import load_random
from vramtui.measure.engine.weight_split import weight_split
from vramtui.measure.events import WeightSplit
from vramtui.models.catalogue import lookup
from vramtui.models.hf import first_line, short_reason, transformers_config
from vramtui.models.layer_placement import Placement, device_name, summarize
from vramtui.runspec import RunSpec
from vramtui.runspec.device_map import parse_max_memory
from vramtui.runspec.sources import read_config_source

TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass
class BuiltModel:
    model: Any
    tokenizer: Any | None
    params: int
    weights_bytes: int
    placement: Placement | None = None  # where a device map put each module
    split: WeightSplit | None = None  # packed quantized weights, their state, full precision


def max_memory_of(spec: RunSpec) -> dict[int | str, int] | None:
    """--max-memory as accelerate takes it (GPU index or "cpu" -> bytes)."""
    return parse_max_memory(spec.max_memory) if spec.max_memory else None


def placement_of(model: Any) -> Placement:
    """Each device's share of a model loaded with a device map (its hf_device_map;
    transformers sets none where the map put everything on one device)."""
    device_map = getattr(model, "hf_device_map", None)
    if not device_map:
        device_map = {"": str(next(model.parameters()).device)}
    return summarize(model, {name: device_name(d) for name, d in device_map.items()})


def _config_for(spec: RunSpec) -> Any:
    if spec.source == "architecture":
        return transformers_config(lookup(spec.model).config, spec.model)
    return transformers_config(read_config_source(spec.path), str(spec.path))


def _load_error(spec: RunSpec, exc: Exception) -> UsageError:
    """A config/checkpoint that transformers refuses, as one line for the user."""
    text = short_reason(first_line(exc))
    what = spec.path or spec.model
    if "Unrecognized configuration class" in text or "Unrecognized model" in text:
        return UsageError(f"{what} is not a causal language model transformers can build: {text}")
    field = "attn" if "--attn" in text else "path"
    return UsageError(f"cannot load {what}: {text}", field=field)


def configure_backends(spec: RunSpec, device: torch.device) -> dict[str, str]:
    """Process-wide kernel choices a run depends on; returned for the record."""
    if device.type != "cuda":
        return {}
    if not spec.cudnn_sdpa and hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
        torch.backends.cuda.enable_cudnn_sdp(False)
    enabled = getattr(torch.backends.cuda, "cudnn_sdp_enabled", lambda: False)()
    return {"sdpa_cudnn": "on" if enabled else "off"}


def build(spec: RunSpec, device: torch.device, dtype: str) -> BuiltModel:
    from transformers import AutoModelForCausalLM

    configure_backends(spec, device)
    torch_dtype = TORCH_DTYPES[dtype]
    quantization = quantization_config(spec.quant, spec.double_quant, torch_dtype)
    tokenizer = None
    if spec.source == "checkpoint":
        try:
            model = AutoModelForCausalLM.from_pretrained(
                spec.path,
                dtype=torch_dtype,
                attn_implementation=spec.attn,
                use_safetensors=None if spec.allow_pickle else True,
                local_files_only=not spec.allow_download,
                trust_remote_code=False,
                # straight onto the device, or placed by the map, as users load
                device_map=spec.device_map or {"": device},
                max_memory=max_memory_of(spec),
                quantization_config=quantization,
            )
        except (ValueError, KeyError, OSError) as exc:
            raise _load_error(spec, exc) from None
        if spec.prompt:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(
                    spec.path, local_files_only=not spec.allow_download, trust_remote_code=False
                )
            except (OSError, ValueError):
                tokenizer = None
    else:
        config = _config_for(spec)
        try:
            model = load_random(
                config,
                device,
                torch_dtype,
                spec.attn,
                spec.device_map,
                max_memory_of(spec),
                quantization,
            )
        except (ValueError, KeyError) as exc:
            raise _load_error(spec, exc) from None
    model.eval()
    split = weight_split(model)
    if spec.source == "architecture":
        expected = lookup(spec.model).params
        if split.params != expected:
            raise RuntimeError(
                f"{spec.model} built with {split.params:,} parameters, expected {expected:,} "
                "(is the lm_head untied?)"
            )
    if spec.prompt and tokenizer is None:
        raise UsageError(
            "--prompt needs a checkpoint with a tokenizer; use --prompt-tokens instead"
        )
    placement = placement_of(model) if spec.device_map else None
    return BuiltModel(model, tokenizer, split.params, split.total_bytes, placement, split)


def random_prompt(spec: RunSpec, config: Any) -> torch.Tensor:
    """spec.batch x spec.prompt_tokens random ids (CPU), the same for a given seed."""
    generator = torch.Generator(device="cpu").manual_seed(spec.seed)
    vocab = int(getattr(config, "vocab_size", 50272))
    return torch.randint(4, vocab, (spec.batch, spec.prompt_tokens), generator=generator)


# The backend that stores a --cache quantized (transformers' QuantizedCache): quanto
# installs and runs on the CPU and CUDA; HQQ is not installed with the quant extra.
CACHE_BACKEND = "quanto"
RESIDUAL_TOKENS = 128  # the newest tokens a QuantizedCache keeps in full precision


def kv_storage(cache: str, cache_bits: int, dtype: str) -> str:
    """How the KV cache is stored, said in a few words ("" for a full-precision one)."""
    if cache != "quantized":
        return ""
    return f"{CACHE_BACKEND} int{cache_bits}, up to {RESIDUAL_TOKENS} newest tokens in {dtype}"


def generate_kwargs(
    model: Any, tokens: int, cache: str = "dynamic", cache_bits: int = 4
) -> dict[str, Any]:
    """How every run calls `generate`: greedy, exactly `tokens` new tokens (EOS
    suppressed by min_new_tokens), with the cache (transformers' cache_implementation
    unless dynamic, its default; a quantized one stored by quanto in `cache_bits`).
    The overhead benchmark's plain baseline calls it the same way."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    pad = getattr(model.config, "pad_token_id", None)
    if pad is None:
        pad = eos[0] if isinstance(eos, list) else eos if eos is not None else 0
    return {
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "do_sample": False,
        "num_beams": 1,
        "use_cache": True,
        "pad_token_id": pad,
        **({"cache_implementation": cache} if cache != "dynamic" else {}),
        **(
            {
                "cache_config": {
                    "backend": CACHE_BACKEND,
                    "nbits": cache_bits,
                    "residual_length": RESIDUAL_TOKENS,
                }
            }
            if cache == "quantized"
            else {}
        ),
    }
