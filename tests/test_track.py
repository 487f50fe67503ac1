"""`vramtui.track()`: in-process recording for notebooks, on the CPU (RSS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import TINY_CONFIG

import vramtui
from vramtui.cli import main


@pytest.fixture(scope="module")
def tiny() -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    data = json.loads(TINY_CONFIG.read_text())
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config), config


def ids(batch: int = 1) -> Any:
    import torch

    return torch.randint(3, 200, (batch, 4), generator=torch.Generator().manual_seed(1))


def test_a_block_is_recorded_and_show_reads_it(
    tmp_path: Path, tiny: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoModelForCausalLM, GenerationMixin

    original = GenerationMixin.generate
    model, config = tiny
    with vramtui.track(json=tmp_path / "t.json", csv=tmp_path / "t.csv") as tracker:
        assert GenerationMixin.generate is not original  # hooked inside the block
        second = AutoModelForCausalLM.from_config(config)
        model.generate(ids(2), max_new_tokens=5, min_new_tokens=5, do_sample=False)
        second.generate(ids(), max_new_tokens=3, min_new_tokens=3, num_beams=2)
        live = tracker.session
        assert live is not None and live.tokens_done == 8  # readable inside the block
    assert GenerationMixin.generate is original  # and put back after it
    summary = json.loads((tmp_path / "t.json").read_text())
    assert summary["status"] == "completed"
    assert summary["environment"]["backend"] == "cpu"
    got = [
        (g["index"], g["batch"], g["num_beams"], g["tokens_generated"])
        for g in summary["generations"]
    ]
    assert got == [(0, 2, 1, 5), (1, 1, 2, 3)]
    assert summary["peaks"]["allocated"]["value"] > 0  # the process's RSS
    assert tracker.saved == [tmp_path / "t.csv", tmp_path / "t.json"]
    assert main(["show", str(tmp_path / "t.json")]) == 0
    assert "1 × 2 beams" in capsys.readouterr().out
    assert main(["show", str(tmp_path / "t.csv")]) == 0
    assert "8 tokens" in capsys.readouterr().out


def test_a_decorated_function_that_runs_out_of_memory(tmp_path: Path, tiny: Any) -> None:
    import torch

    model, _ = tiny

    @vramtui.track(json=tmp_path / "t.json")
    def chat() -> None:
        model.generate(ids(), max_new_tokens=4, min_new_tokens=4, do_sample=False)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    with pytest.raises(torch.OutOfMemoryError):  # the program's exception goes on
        chat()
    summary = json.loads((tmp_path / "t.json").read_text())
    assert summary["status"] == "failed"
    failure = summary["failure"]
    assert (failure["kind"], failure["requested_bytes"]) == ("oom", 20 * 1024**2)
    assert summary["generations"][0]["tokens_generated"] == 4


def test_with_nothing_asked_the_session_goes_to_the_folder(tmp_path: Path, tiny: Any) -> None:
    model, _ = tiny
    with vramtui.track(out=tmp_path, name="cell-3") as tracker:
        model.generate(ids(), max_new_tokens=2, min_new_tokens=2, do_sample=False)
    names = sorted(p.suffix for p in tmp_path.iterdir())
    assert names == [".csv", ".json"] and tracker.saved[1].parent == tmp_path
    assert "cell-3" in tracker.saved[1].name


def test_one_recording_at_a_time(tmp_path: Path) -> None:
    with vramtui.track(out=tmp_path):
        with pytest.raises(RuntimeError, match="already recording"):
            with vramtui.track(out=tmp_path):
                pass


@pytest.mark.parametrize("caught", [False, True])
def test_a_failure_is_placed_where_it_was_raised(
    tmp_path: Path, tiny: Any, monkeypatch: pytest.MonkeyPatch, caught: bool
) -> None:
    """An OOM inside generate() is the session's failure at its step; once the program
    has caught it, a later error is placed in the program, not at that step."""
    import torch

    monkeypatch.setenv("VRAMTUI_TEST_OOM_AT_TOKEN", "1")
    model, _ = tiny
    expected = ValueError if caught else torch.OutOfMemoryError
    with pytest.raises(expected):
        with vramtui.track(json=tmp_path / "t.json"):
            try:
                model.generate(ids(), max_new_tokens=3, min_new_tokens=3, do_sample=False)
            except torch.OutOfMemoryError:
                if not caught:
                    raise
            raise ValueError("later")
    summary = json.loads((tmp_path / "t.json").read_text())
    failure = summary["failure"]
    where = (failure["kind"], failure["phase"], failure["token"])
    assert where == (("error", "program", None) if caught else ("oom", "decode", 1))
    (g,) = summary["generations"]
    assert (g["status"], g["steps"]) == ("failed", 1)
