"""The linear layers of a model, and which of them the quantizers convert.

Child side (imports torch and transformers; tracer_main.py calls it on the meta
model). The skip list is transformers' own (`get_keys_to_not_convert` and the
class's `_keep_in_fp32_modules`, matched with `should_convert_module`), as its
bitsandbytes and torchao quantizers compute it when they load a model; which
modules each converts is the test each applies: bitsandbytes `type(module) is
nn.Linear` or `Conv1D` (replace_with_bnb_linear), torchao `isinstance(module,
nn.Linear)` (TorchAoHfQuantizer.param_needs_quantization).
"""

from __future__ import annotations

from typing import Any


def skip_patterns(model: Any) -> list[str]:
    """The modules transformers' quantizers leave in the model's dtype by default."""
    from transformers.quantizers.base import get_keys_to_not_convert

    keep = list(getattr(model, "_keep_in_fp32_modules", None) or [])
    return sorted(set(get_keys_to_not_convert(model)) | set(keep))


def linear_inventory(model: Any) -> list[dict[str, Any]]:
    """Every linear layer: name, rows (out_features), cols (in_features), and whether
    bitsandbytes and torchao convert it."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D
    from transformers.quantizers.quantizers_utils import should_convert_module

    patterns = skip_patterns(model)
    out = []
    for name, module in model.named_modules():
        conv1d = isinstance(module, Conv1D)
        if not (isinstance(module, nn.Linear) or conv1d):
            continue
        convert = should_convert_module(name, patterns)
        if conv1d:
            cols, rows = module.weight.shape
        else:
            rows, cols = module.out_features, module.in_features
        exact = type(module) is nn.Linear or conv1d
        out.append(
            {
                "name": name,
                "rows": int(rows),
                "cols": int(cols),
                "bnb": bool(convert and exact),
                "torchao": bool(convert and isinstance(module, nn.Linear)),
            }
        )
    return out
