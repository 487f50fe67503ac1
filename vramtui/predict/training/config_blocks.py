"""What each block of a training step keeps for backward and holds for a moment,
from a config's numbers: the approximate trace's blocks (config_steps.py).

Pure Python. Sizes are a micro-batch's b x s tokens; `a` is the activations' bytes
per element (the run's dtype; float32 for QLoRA, whose embedding and norms
`prepare_model_for_kbit_training` upcasts). Read from the traced steps of each family
(step_tracer.py) and autograd's rules (an op saves an input only where the other
needs a gradient):
- a norm keeps a float32 copy of its input and the reciprocal root per token, and its
  scaled input where its weight trains;
- a linear layer keeps its input where its weight trains; a LoRA adapter keeps the
  input cast to its float32 (one copy an adapter, unless the input is float32
  already) and lora_A's output; a 4-bit base keeps nothing (it dequantizes again);
- attention keeps the rotated queries and keys, the values, its output and a float32
  log-sum-exp per row (flash attention); where a GPU falls back to the math kernel
  (float32 queries with grouped heads: QLoRA's) the scaled queries, the expanded keys
  and values and the float32 probabilities;
- the MLP keeps its gate, the activation, up, and their product where down's weight
  (or its adapter on a float32 input) needs it;
- OPT's dropout keeps a bool mask, a byte an element (a GPU's fused kernel; the meta
  device's `F.dropout` keeps a mask of the input's dtype instead, so its traced step
  keeps more);
- the loss keeps the float32 log-softmax of the logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vramtui.models.architecture import DTYPE_BYTES
from vramtui.predict.config_trace import Shape
from vramtui.predict.training.config_params import ConfigParams, Linear
from vramtui.predict.training.optimizer_states import Param
from vramtui.predict.training.trace import TrainShape

FLOAT32 = 4
SMALL = 1024 * 1024  # the caching allocator's small pool: requests of 1 MiB or less
# The input each linear layer reads, by its module's last name: n1 (the attention's
# norm), ctx (attention's output), n2 (the MLP's norm), mid (the MLP's inner product).
INPUTS = {
    "q_proj": "n1", "k_proj": "n1", "v_proj": "n1", "qkv_proj": "n1",
    "query_key_value": "n1", "o_proj": "ctx", "dense": "ctx", "gate_proj": "n2",
    "up_proj": "n2", "gate_up_proj": "n2", "dense_h_to_4h": "n2", "down_proj": "mid",
    "dense_4h_to_h": "mid", "out_proj": "ctx", "fc1": "n2", "fc2": "mid",
}  # fmt: skip


@dataclass(frozen=True)
class Block:
    """One block of the step: a decoder layer, the embedding or the head."""

    saved: tuple[int, ...]  # allocated in the forward, freed in its backward
    transient: tuple[int, ...]  # held together for a moment in the forward, above `saved`
    backward: tuple[int, ...]  # held together for a moment in its backward, above `saved`
    params: tuple[Param, ...]  # whose gradients its backward allocates
    checkpointed: bool = False  # a decoder layer (recomputed under checkpointing)
    carry: int = 0  # kept under checkpointing: the layer's input
    late: tuple[int, ...] = ()  # saved too, made while `transient` is held (the loss's)


@dataclass(frozen=True)
class Dims:
    """A config's sizes (config_trace.Shape) at a training shape."""

    size: Shape
    kind: str
    bs: int  # tokens in a micro-batch
    batch: int
    seq: int
    a: int  # activation bytes
    head_a: int  # the logits' bytes (the head's dtype)
    r: int
    math: bool  # attention falls back to the math kernel
    tied: bool

    @classmethod
    def of(cls, c: dict[str, Any], shape: TrainShape, inv: ConfigParams) -> Dims:
        size = Shape.of(c)
        a = FLOAT32 if shape.method == "qlora" else DTYPE_BYTES[shape.dtype]
        names = {p.name for p in inv.params}
        return cls(
            size=size, kind=str(c.get("model_type", "")), bs=shape.batch * shape.seq,
            batch=shape.batch, seq=shape.seq, a=a, head_a=a, r=shape.lora_r,
            math=shape.backend == "cuda" and a == FLOAT32 and size.kv_heads != size.heads,
            tied=not any(n.startswith("lm_head") or n.endswith("embed_out.weight")
                         for n in names),
        )  # fmt: skip


def _linears_saved(
    d: Dims, linears: list[Linear], trained: set[str], kept: str = ""
) -> tuple[list[int], tuple[int, ...]]:
    """The linear layers' saved tensors (inputs shared among layers reading the same
    one) and the most an adapter holds for a moment."""
    groups: dict[str, int] = {}
    saved: list[int] = []
    moment: tuple[int, ...] = ()
    for lin in linears:
        group = INPUTS.get(lin.name.rsplit(".", 1)[-1], lin.name)
        if group == kept:  # saved by another op already
            pass
        elif f"{lin.name}.weight" in trained or (lin.adapted and d.a == FLOAT32):
            groups[group] = d.a * d.bs * lin.cols
        if lin.adapted:
            if d.a != FLOAT32:
                saved.append(FLOAT32 * d.bs * lin.cols)
            saved.append(FLOAT32 * d.bs * d.r)
            moment = max(moment, (FLOAT32 * d.bs * lin.rows,) * 2, key=sum)
    return saved + list(groups.values()), moment


def _attention(d: Dims) -> tuple[list[int], tuple[int, ...]]:
    """Attention's saved tensors and its backward's moment."""
    qd, kvd, bs, a = d.size.heads * d.size.head_dim, d.size.kv_heads * d.size.head_dim, d.bs, d.a
    rows = -(-d.seq // 128) * 128
    if d.math:
        probs = FLOAT32 * d.batch * d.size.heads * d.seq * d.seq
        saved = [a * bs * qd, a * bs * kvd, a * bs * qd, a * bs * qd, a * bs * qd, probs]
        return saved, (probs, probs, a * bs * qd, a * bs * kvd, a * bs * kvd)
    lse = FLOAT32 * d.batch * d.size.heads * d.seq
    saved = [a * bs * qd, a * bs * kvd, a * bs * kvd, a * bs * qd, lse]
    accum = (FLOAT32 * d.batch * rows * qd, FLOAT32 * d.batch * rows * d.size.heads)
    return saved, (*accum, a * bs * qd, a * bs * qd, a * bs * kvd, a * bs * kvd)


def _norm(d: Dims, trained: bool) -> list[int]:
    scaled = [d.a * d.bs * d.size.hidden] if trained else []
    return [FLOAT32 * d.bs * d.size.hidden, FLOAT32 * d.bs, *scaled]


def _head_norms(d: Dims, trained: set[str]) -> list[int]:
    """Qwen 3's norms of each head's queries and keys: a float32 copy and a
    root per head and token (and the scaled input where their weights train)."""
    if d.kind != "qwen3":
        return []
    qd, kvd = d.size.heads * d.size.head_dim, d.size.kv_heads * d.size.head_dim
    sizes = [FLOAT32 * d.bs * qd, FLOAT32 * d.bs * d.size.heads, FLOAT32 * d.bs * kvd]
    sizes.append(FLOAT32 * d.bs * d.size.kv_heads)
    if any(name.endswith("q_norm.weight") for name in trained):
        sizes += [d.a * d.bs * qd, d.a * d.bs * kvd]
    return sizes


def _layer(d: Dims, linears: list[Linear], params: list[Param]) -> Block:
    trained = {p.name for p in params if p.trainable}
    lin_saved, adapter = _linears_saved(d, linears, trained, "mid" if d.kind == "opt" else "")
    a, bs, h, f = d.a, d.bs, d.size.hidden, d.size.ffn
    norms_trained = [p.name in trained for p in params if "norm" in p.name and len(p.shape) == 1]
    attn, attn_back = _attention(d)
    if d.kind == "gpt_neox":
        norms = [a * bs * h, 4 * FLOAT32 * bs]  # the layer's input, means and roots
        mlp = [a * bs * f]
    elif d.kind == "opt":  # two LayerNorms' inputs, means and roots; dropout's masks
        norms = [a * bs * h, a * bs * h, 4 * FLOAT32 * bs, bs * h, bs * h]
        mlp = [a * bs * f]  # relu keeps its output: fc2's input
    else:
        norms = [s for t in norms_trained[:2] or [False, False] for s in _norm(d, t)]
        mlp = [2 * a * bs * f, a * bs * f] if d.kind == "phi3" else [3 * a * bs * f]
    saved = tuple(norms + _head_norms(d, trained) + attn + mlp + lin_saved)
    quantized = any(p.four_bit for p in params)
    four_bit = [(2 * bs * lin.cols, 2 * lin.rows * lin.cols, 2 * bs * lin.rows, 4 * bs * lin.rows)
                for lin in linears if quantized]  # fmt: skip
    rotary = (a * bs * d.size.heads * d.size.head_dim,) * 2
    moment = max([(FLOAT32 * bs * h,), rotary, adapter, *four_bit], key=sum)
    mlp_back = (a * bs * f,) * 3 + (a * bs * h,) * 2
    backward = (a * bs * h, *max(mlp_back, attn_back, key=sum), *adapter)
    residual = (a * bs * h,) * 2
    return Block(
        packed(saved), packed((*residual, *moment)), packed(backward), tuple(params), True,
        a * bs * h,
    )  # fmt: skip


def packed(sizes: tuple[int, ...]) -> tuple[int, ...]:
    """The small pool's tensors (1 MiB or less, rounded to 512 bytes as the allocator
    rounds them) packed together up to 1 MiB, the large ones as they are: the same
    bytes in the same pool, in fewer events for the replay."""
    large = [size for size in sizes if size > SMALL]
    packs: list[int] = []
    for size in (-(-s // 512) * 512 for s in sizes if 0 < s <= SMALL):
        if packs and packs[-1] + size <= SMALL:
            packs[-1] += size
        else:
            packs.append(size)
    return (*large, *packs)


def blocks(d: Dims, inv: ConfigParams) -> list[Block] | None:
    """The embedding and each decoder layer, in the forward's order."""
    if d.kind not in INPUT_FAMILIES:
        return None
    by_layer: dict[int, list[Param]] = {}
    linears: dict[int, list[Linear]] = {}
    for lin in inv.linears:
        parts = lin.name.split(".")
        if "layers" not in parts:
            continue
        linears.setdefault(int(parts[parts.index("layers") + 1]), []).append(lin)
    embed: list[Param] = []
    for p in inv.params:
        parts = p.name.split(".")
        if "layers" in parts:
            by_layer.setdefault(int(parts[parts.index("layers") + 1]), []).append(p)
        elif "embed" in p.name or "project_in" in p.name:
            embed.append(p)
    rotary = 2 * d.a * d.seq * d.size.head_dim
    hidden = (d.a * d.bs * d.size.hidden,)
    first = Block((rotary,), hidden, hidden, tuple(embed))
    layers = (_layer(d, linears.get(i, []), by_layer.get(i, [])) for i in range(d.size.layers))
    return [first, *layers]


def head_blocks(d: Dims, inv: ConfigParams) -> list[Block]:
    """The final norm, the output head and the loss."""
    names = ("lm_head", "embed_out", "final_layer_norm", ".norm.", "project_out")
    params = [
        p for p in inv.params if ".layers." not in p.name and any(n in f".{p.name}" for n in names)
    ]
    head = [p for p in params if "lm_head" in p.name or "embed_out" in p.name]
    if d.tied:  # the embedding's gradient first comes from the head
        head = [
            p for p in inv.params if p.name.endswith(("embed_tokens.weight", "embed_in.weight"))
        ]
    trained_head = any(p.trainable for p in head)
    norm = [p for p in params if p not in head]
    logits = d.bs * d.size.vocab
    if d.kind in ("gpt_neox", "opt"):  # a LayerNorm keeps its input, means and roots
        normed = [d.a * d.bs * d.size.hidden, 2 * FLOAT32 * d.bs]
    else:
        normed = _norm(d, any(p.trainable for p in norm))
    saved = list(normed)
    if trained_head:
        saved.append(d.a * d.bs * d.size.hidden)
    copy = (FLOAT32 * logits,) if d.head_a != FLOAT32 else ()
    transient = (d.head_a * logits, *copy)  # the logits, their float32 copy
    backward = (FLOAT32 * logits,) * 2
    late = (FLOAT32 * logits,)  # the log-softmax, made from the copy
    return [Block(tuple(saved), transient, backward, tuple(norm + head), late=late)]


# The families whose blocks are written here (Gemma's are not: Gemma 2 has no sdpa
# attention, Gemma 3 two more norms and its own activation; a mixture's experts neither).
INPUT_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gpt_neox", "opt")
