from __future__ import annotations

import pytest
from helpers import PUBLISHED_OPT

from vramtui.errors import UsageError
from vramtui.models.catalogue import CATALOGUE, families, lookup, variant_note
from vramtui.models.opt import opt_model

TABLE = PUBLISHED_OPT


def test_catalogue_has_the_published_opt_sizes_first() -> None:
    opt = [e.name for e in families()["OPT"]]
    assert opt[: len(TABLE)] == list(TABLE)
    assert opt[len(TABLE) :] == ["opt-175b"]
    assert all(CATALOGUE[name].opt is opt_model(name) for name in opt)


@pytest.mark.parametrize("name", list(TABLE))
def test_built_parameter_count_matches_published_table(name: str) -> None:
    """Build each size on the meta device (no memory) exactly as the engine does."""
    import torch
    from transformers import AutoModelForCausalLM, OPTConfig

    info = opt_model(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(OPTConfig(**info.config_kwargs()))
    model.tie_weights()
    assert model.lm_head.weight is model.model.decoder.embed_tokens.weight
    unique = {id(p): p.numel() for p in model.parameters()}
    assert sum(unique.values()) == TABLE[name][0]
    assert info.params == TABLE[name][0]


@pytest.mark.parametrize("name", list(TABLE))
def test_kv_bytes_per_token_fp16(name: str) -> None:
    assert opt_model(name).kv_bytes_per_token("float16") == TABLE[name][1]


def test_lookup_accepts_hub_ids_and_case() -> None:
    assert lookup("facebook/opt-1.3b").name == "opt-1.3b"
    assert lookup("OPT-125M").name == "opt-125m"
    assert lookup("meta-llama/Llama-3.1-8B").name == "llama-3.1-8b"
    assert lookup("qwen/qwen3-30b-a3b-base").name == "qwen3-30b-a3b"
    assert lookup("Mixtral-8x7B").family == "Mistral"


def test_every_family_the_issue_names_is_in_the_catalogue() -> None:
    names = set(CATALOGUE)
    for name in (
        "llama-3.2-1b",
        "llama-3.2-3b",
        "llama-3.1-8b",
        "llama-3.1-70b",
        "llama-3.1-405b",
        "llama-3.3-70b",
        "qwen2.5-0.5b",
        "qwen2.5-72b",
        "qwen3-0.6b",
        "qwen3-32b",
        "qwen3-30b-a3b",
        "mistral-7b-v0.3",
        "mixtral-8x7b",
        "gemma-2-2b",
        "gemma-2-9b",
        "gemma-2-27b",
        "gemma-3-1b",
        "phi-3-mini-4k",
        "phi-4",
        "pythia-1.4b",
        "opt-175b",
    ):
        assert name in names, name


def test_unknown_model_suggests_close_names_and_where_the_list_is() -> None:
    with pytest.raises(UsageError) as err:
        lookup("lama-3.1-8b")
    assert "did you mean llama-3.1-8b" in str(err.value)
    assert f"`vramtui models` lists the {len(CATALOGUE)} known" in str(err.value)
    with pytest.raises(UsageError) as err:
        lookup("bloom-176b")
    assert "did you mean" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
        ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b-v0.3"),
        ("google/gemma-2-2b-it", "gemma-2-2b"),
        ("google/gemma-3-4b-it", "gemma-3-4b"),  # the catalogue names the -pt repo
        ("Qwen/Qwen3-8B", "qwen3-8b"),  # the catalogue names the -Base repo
        ("qwen2.5-0.5b-chat", "qwen2.5-0.5b"),  # short names too
    ],
)
def test_a_fine_tuned_variant_is_read_as_its_base_model(name: str, base: str) -> None:
    assert lookup(name).name == base
    assert variant_note(name) == f"{name}: same architecture as {base}"


def test_a_catalogue_name_is_no_variant() -> None:
    assert variant_note("qwen2.5-7b") is None
    assert variant_note("meta-llama/Llama-3.3-70B-Instruct") is None  # its own entry
    assert variant_note("gpt2-instruct") is None


def test_a_hub_id_gets_suggestions_as_a_short_name_does() -> None:
    with pytest.raises(UsageError) as err:
        lookup("meta-llama/Meta-Llama-3.1-8B-Instruct")
    assert "did you mean llama-3.1-8b" in str(err.value)
    with pytest.raises(UsageError) as err:
        lookup("Qwen/Qwen2-7B-Instruct")
    assert "did you mean qwen2.5-7b" in str(err.value)


def test_a_name_the_query_begins_is_suggested_first() -> None:
    with pytest.raises(UsageError) as err:
        lookup("mistral-7b")
    assert "did you mean mistral-7b-v0.3, mixtral-8x7b?" in str(err.value)


@pytest.mark.parametrize("name", ["opt-125m", "opt-350m", "opt-1.3b"])
def test_the_checkpoint_tensors_are_the_ones_the_loader_walks(name: str) -> None:
    """The load model's tensor list: the names, sizes and order transformers' loader
    walks for a checkpoint of this architecture (the tied lm_head absent)."""
    import math

    import torch
    from transformers import OPTConfig
    from transformers.core_model_loading import dot_natural_key

    from vramtui.measure.engine.random_weights import checkpoint_tensors
    from vramtui.models.hf import meta_model

    info = opt_model(name)
    meta = meta_model(OPTConfig(**info.config_kwargs()), torch.float16)
    real = checkpoint_tensors(meta, {"": "meta"})
    walked = [(key, math.prod(real[key].shape)) for key in sorted(real, key=dot_natural_key)]
    assert info.checkpoint_tensors() == walked
    assert "lm_head.weight" not in real
