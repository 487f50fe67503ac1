"""docs/fit.md's fine-tuning tables: for 8, 12, 16, 24, 48 and 80 GB cards, the largest
catalogue model of each family that LoRA- and QLoRA-fine-tunes sequences of 2048 tokens
(micro-batch 1, bfloat16, sdpa, AdamW, no gradient checkpointing).

Every cell is a prediction of `vramtui fit --workload lora|qlora` (nothing runs on a
device), with the cards read as fit_table.py reads them and fit's 5 % margin. Each model
tried is traced once per workload at that setting (a child process a trace, on the meta
device; kept in the trace cache, so a second run reads them): the families' models are
tried from the largest down, so a family costs as many traces as it has models larger
than what fits the smallest card. Needs peft (the `.[train]` extra); no GPU.

    python benchmarks/fit_train_table.py --write docs/fit.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _common  # noqa: E402, F401  (this checkout's vramtui first)
from fit_table import MARGIN, SIZES_GB, card, write  # noqa: E402

from vramtui.errors import UsageError  # noqa: E402
from vramtui.models.cards import CONTEXT_ASSUMED, card_target  # noqa: E402
from vramtui.models.catalogue import Entry, families  # noqa: E402
from vramtui.predict.fit_search import Budget  # noqa: E402
from vramtui.predict.planner import Setting  # noqa: E402
from vramtui.predict.training.planner import TrainPlanner  # noqa: E402

WORKLOADS = {"lora": "LoRA", "qlora": "QLoRA"}
SEQ = 2048
BEGIN = "<!-- fit-train-table: benchmarks/fit_train_table.py -->"
END = "<!-- /fit-train-table -->"


class Needs:
    """Each model's need at the setting, traced when first asked (None: cannot trace)."""

    def __init__(self, workload: str) -> None:
        self.planner = TrainPlanner()
        self.setting = Setting(workload=workload, prompt_tokens=8, tokens=SEQ - 8, batch=1,
                               dtype="bfloat16")  # fmt: skip
        self.known: dict[str, int | None] = {}
        self.failed: dict[str, str] = {}  # model: why its step cannot be traced

    def of(self, model: Entry) -> int | None:
        if model.name not in self.known:
            try:
                need = self.planner.peak(model, self.setting).need_bytes
            except UsageError as err:  # the model's code cannot be traced on meta
                print(f"{model.name}: {err}", file=sys.stderr)
                self.failed[model.name] = str(err).split(": ", 1)[-1]
                need = None
            self.known[model.name] = need
        return self.known[model.name]


def largest(models: list[Entry], needs: Needs, usable: int) -> str:
    for model in sorted(models, key=lambda m: m.params, reverse=True):
        if model.positions is not None and model.positions < SEQ:
            continue
        need = needs.of(model)
        if need is not None and need <= usable:
            return model.name
    return "–"


def budgets() -> list[Budget]:
    out = []
    for size in SIZES_GB:
        target = card_target(card(size))
        margin = int(target.total_bytes * MARGIN)
        out.append(Budget(target.total_bytes, target.context_bytes, margin))
    return out


def table(workload: str) -> list[str]:
    """The workload's table, and a line naming the models left out (their step cannot
    be traced, so a cell may name a smaller model than one that fits)."""
    needs = Needs(workload)
    header = "| family | " + " | ".join(f"{s} GB" for s in SIZES_GB) + " |"
    lines = [f"{WORKLOADS[workload]}, sequences of {SEQ} tokens:", "", header]
    lines.append("| --- |" + " --- |" * len(SIZES_GB))
    for family, models in families().items():
        cells = [largest(models, needs, b.usable_bytes) for b in budgets()]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    if needs.failed:
        left = "; ".join(f"{name} ({why})" for name, why in sorted(needs.failed.items()))
        lines += ["", f"Not traced, so not tried: {left}."]
    return lines + [""]


def text() -> str:
    lines = [line for workload in WORKLOADS for line in table(workload)]
    notes = [
        f"Micro-batch 1, bfloat16, sdpa, AdamW; QLoRA's base in nf4 with double quant. "
        f"CUDA context: {CONTEXT_ASSUMED}. Every cell traced at its setting (the `traced` "
        "basis). Written by `benchmarks/fit_train_table.py`.",
    ]
    return "\n".join(lines + notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="the page whose table block to rewrite")
    args = parser.parse_args()
    body = text()
    if args.write:
        write(args.write, body, BEGIN, END)
    else:
        print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
