from __future__ import annotations

import pytest

from vramtui.errors import UsageError
from vramtui.models.catalogue import CATALOGUE, lookup

# From ../shared/DESIGN.md (published OPT architectures).
TABLE = {
    "opt-125m": (125_239_296, 36_864),
    "opt-350m": (331_196_416, 98_304),
    "opt-1.3b": (1_315_758_080, 196_608),
    "opt-2.7b": (2_651_596_800, 327_680),
    "opt-6.7b": (6_658_473_984, 524_288),
    "opt-13b": (12_853_473_280, 819_200),
    "opt-30b": (29_974_540_288, 1_376_256),
    "opt-66b": (65_719_701_504, 2_359_296),
}


def test_catalogue_has_the_eight_sizes() -> None:
    assert list(CATALOGUE) == list(TABLE)


@pytest.mark.parametrize("name", list(TABLE))
def test_built_parameter_count_matches_published_table(name: str) -> None:
    """Build each size on the meta device (no memory) exactly as the engine does."""
    import torch
    from transformers import AutoModelForCausalLM, OPTConfig

    info = lookup(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(OPTConfig(**info.config_kwargs()))
    model.tie_weights()
    assert model.lm_head.weight is model.model.decoder.embed_tokens.weight
    unique = {id(p): p.numel() for p in model.parameters()}
    assert sum(unique.values()) == TABLE[name][0]
    assert info.params == TABLE[name][0]


@pytest.mark.parametrize("name", list(TABLE))
def test_kv_bytes_per_token_fp16(name: str) -> None:
    assert lookup(name).kv_bytes_per_token("float16") == TABLE[name][1]


def test_lookup_accepts_hub_ids_and_case() -> None:
    assert lookup("facebook/opt-1.3b").name == "opt-1.3b"
    assert lookup("OPT-125M").name == "opt-125m"


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(UsageError) as err:
        lookup("gpt-5")
    assert "opt-125m" in str(err.value) and "opt-66b" in str(err.value)


@pytest.mark.parametrize("name", ["opt-125m", "opt-350m", "opt-1.3b"])
def test_the_checkpoint_tensors_are_the_ones_the_loader_walks(name: str) -> None:
    """The load model's tensor list: the names, sizes and order transformers' loader
    walks for a checkpoint of this architecture (the tied lm_head absent)."""
    import math

    import torch
    from transformers import OPTConfig
    from transformers.core_model_loading import dot_natural_key

    from vramtui.measure.engine.random_weights import checkpoint_tensors

    info = lookup(name)
    real = checkpoint_tensors(
        OPTConfig(**info.config_kwargs()), torch.float16, torch.device("meta")
    )
    walked = [(key, math.prod(real[key].shape)) for key in sorted(real, key=dot_natural_key)]
    assert info.checkpoint_tensors() == walked
    assert "lm_head.weight" not in real
