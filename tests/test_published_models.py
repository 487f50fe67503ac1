"""Every published architecture builds in transformers with exactly the stated parameter count.

The models are built on the meta device: shapes only, no memory, so even the 405B entry and
the mixture-of-experts ones take a fraction of a second."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.utils import logging as transformers_logging

from vramtui.models.published import PUBLISHED, Published


def build(entry: Published) -> tuple[PretrainedConfig, PreTrainedModel]:
    """The config and model transformers build from an entry, weights on the meta device."""
    # A deep copy: transformers edits nested dicts it is given (it adds rope_theta to
    # rope_scaling), which would otherwise change the catalogue's shared data.
    keys = copy.deepcopy(entry.config)
    config = AutoConfig.for_model(keys.pop("model_type"), **keys)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # legacy keys (rope_scaling, ...) are expected
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    finally:
        transformers_logging.set_verbosity(verbosity)
    if config.tie_word_embeddings:
        model.tie_weights()
    return config, model


@pytest.mark.parametrize("entry", PUBLISHED, ids=[entry.name for entry in PUBLISHED])
def test_builds_with_the_stated_parameter_count(entry: Published) -> None:
    published = copy.deepcopy(entry.config)
    config, model = build(entry)
    assert entry.config == published  # building left the catalogue as it was
    assert all(p.device.type == "meta" for p in model.parameters())
    # A tied lm_head is the embedding's own Parameter ...
    tied = model.get_input_embeddings().weight is model.get_output_embeddings().weight
    assert tied == config.tie_word_embeddings
    # ... and parameters() yields each Parameter once, so it is counted once.
    assert sum(p.numel() for p in model.parameters()) == entry.params


def test_names_and_hub_ids_are_unique() -> None:
    names = [entry.name for entry in PUBLISHED]
    hub_ids = [entry.hub_id for entry in PUBLISHED]
    assert len(set(names)) == len(names)
    assert len({hub_id.lower() for hub_id in hub_ids}) == len(hub_ids)


def test_entries_are_well_formed() -> None:
    for entry in PUBLISHED:
        assert entry.name == entry.name.lower(), entry.name
        assert " " not in entry.name, entry.name
        owner, _, repo = entry.hub_id.partition("/")
        assert owner and repo and "/" not in repo, entry.hub_id
        assert entry.family, entry.name
        assert entry.params > 0, entry.name
        assert isinstance(entry.config.get("model_type"), str), entry.name
