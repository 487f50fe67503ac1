"""Widely used causal LMs, by the config.json their publishers released (no downloads).

Pure Python: the memory-relevant keys of each published config, a short name, the
hub id and the parameter count transformers builds from it (tied weights once).

Entries share nested dicts (rope_scaling) and transformers edits the dicts it is given:
build from `copy.deepcopy(entry.config)`, never from `entry.config` itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Published:
    name: str  # short, lowercase: "llama-3.1-8b", "qwen2.5-0.5b", "mixtral-8x7b", "pythia-1.4b"
    hub_id: str  # exactly as on the hub: "meta-llama/Llama-3.1-8B"
    family: str  # the group shown to users: "Llama 3.1", "Qwen2.5", "Gemma 2", ...
    params: int  # parameters of the model transformers builds from `config` (tied lm_head once)
    config: dict[str, Any] = field(default_factory=dict)  # the published config.json's keys


def _e(
    name: str, hub_id: str, family: str, params: int, shared: dict[str, Any], **own: Any
) -> Published:
    """One entry: the keys its family's published configs share, then its own."""
    return Published(name, hub_id, family, params, {**shared, **own})


# Each family's shared keys, as its published config.json files spell them. Left out on
# purpose: tokenizer- and training-only keys (architectures, transformers_version,
# initializer_range, dropouts, use_cache, router_aux_loss_coef, ...).
# fmt: off

# -- Llama 3.x (meta-llama): the base configs say eos 128001, the Instruct ones a list
_LLAMA3: dict[str, Any] = dict(
    model_type="llama", vocab_size=128256, max_position_embeddings=131072, hidden_act="silu",
    attention_bias=False, mlp_bias=False, rms_norm_eps=1e-05, rope_theta=500000.0,
    bos_token_id=128000, eos_token_id=128001, torch_dtype="bfloat16",
)
_LLAMA3_ROPE = dict(low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=8192, rope_type="llama3")
_LLAMA31 = {**_LLAMA3, "tie_word_embeddings": False,
            "rope_scaling": {"factor": 8.0, **_LLAMA3_ROPE}}  # 3.1, 3.3
_LLAMA32 = {**_LLAMA3, "tie_word_embeddings": True,
            "rope_scaling": {"factor": 32.0, **_LLAMA3_ROPE}}  # 3.2: tied, explicit head_dim

# -- Qwen2.5 (Qwen), the base repos; qwen2's q/k/v projections always carry a bias
_QWEN25: dict[str, Any] = dict(
    model_type="qwen2", hidden_act="silu", rope_theta=1000000.0, use_sliding_window=False,
    bos_token_id=151643, eos_token_id=151643, torch_dtype="bfloat16",
)
_QWEN25_SMALL = {**_QWEN25, "vocab_size": 151936, "rms_norm_eps": 1e-06,
                 "tie_word_embeddings": True}  # 0.5B to 3B
_QWEN25_LARGE = {**_QWEN25, "vocab_size": 152064, "tie_word_embeddings": False}  # 7B to 72B

# -- Qwen3 (Qwen): no q/k/v bias, a per-head q/k RMSNorm (head_dim 128 whatever the width)
_QWEN3: dict[str, Any] = dict(
    vocab_size=151936, head_dim=128, hidden_act="silu", attention_bias=False, rms_norm_eps=1e-06,
    rope_theta=1000000, rope_scaling=None, sliding_window=None, use_sliding_window=False,
    bos_token_id=151643, torch_dtype="bfloat16",
)
# The -Base repos: 32768 positions and eos <|endoftext|> (the post-trained ones: 40960, 151645)
_QWEN3_BASE = {**_QWEN3, "max_position_embeddings": 32768, "eos_token_id": 151643}

# -- Mistral (mistralai): Mistral 7B v0.3 and Mixtral 8x7B share everything but the vocabulary
_MISTRAL: dict[str, Any] = dict(
    hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=8, max_position_embeddings=32768, hidden_act="silu", rms_norm_eps=1e-05,
    rope_theta=1000000.0, sliding_window=None, tie_word_embeddings=False, bos_token_id=1,
    eos_token_id=2, torch_dtype="bfloat16",
)

# -- Gemma 2 (google): the base repos publish float32 weights; sliding and global layers alternate
_GEMMA2: dict[str, Any] = dict(
    model_type="gemma2", vocab_size=256000, max_position_embeddings=8192,
    hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh", attention_bias=False,
    rms_norm_eps=1e-06, rope_theta=10000.0, sliding_window=4096, attn_logit_softcapping=50.0,
    final_logit_softcapping=30.0, bos_token_id=2, eos_token_id=1, pad_token_id=0,
    torch_dtype="float32",
)

# -- Gemma 3 (google): 5 sliding layers to 1 global one
_GEMMA3: dict[str, Any] = dict(
    model_type="gemma3_text", head_dim=256, hidden_activation="gelu_pytorch_tanh",
    attention_bias=False, rms_norm_eps=1e-06, query_pre_attn_scalar=256, rope_theta=1000000,
    rope_local_base_freq=10000, sliding_window_pattern=6, attn_logit_softcapping=None,
    final_logit_softcapping=None, bos_token_id=2, eos_token_id=1, pad_token_id=0,
    torch_dtype="bfloat16",
)
# Gemma 3 4b, 12b and 27b publish a multimodal `gemma3` config (a SigLIP vision tower and a
# language model). Their entries hold that config's `text_config` -- the text decoder alone --
# under model_type "gemma3_text". The published text_config names only the keys that differ
# from Gemma3TextConfig's defaults; the defaults it relies on (vocab 262208, 131072 positions,
# 8 heads / 4 kv heads, head_dim 256, query_pre_attn_scalar 256, rope_theta 1e6 / local 1e4,
# 5 local : 1 global) are written out, so that an entry does not move with transformers' defaults.
_GEMMA3_MM = {**_GEMMA3, "vocab_size": 262208, "max_position_embeddings": 131072,
              "num_attention_heads": 8, "num_key_value_heads": 4, "sliding_window": 1024,
              "rope_scaling": {"factor": 8.0, "rope_type": "linear"}}

# -- Phi (microsoft): Phi-3 (Llama-like, a 2047-token sliding window) and phi-4 (model_type phi3)
_PHI3: dict[str, Any] = dict(
    model_type="phi3", vocab_size=32064, max_position_embeddings=4096,
    original_max_position_embeddings=4096, hidden_act="silu", attention_bias=False,
    rms_norm_eps=1e-05, rope_theta=10000.0, rope_scaling=None, sliding_window=2047,
    tie_word_embeddings=False, bos_token_id=1, eos_token_id=32000, pad_token_id=32000,
    torch_dtype="bfloat16",
)

# -- Pythia (EleutherAI, GPT-NeoX): float16 weights, MLP 4x wide, rotary on a quarter of each head
_PYTHIA: dict[str, Any] = dict(
    model_type="gpt_neox", max_position_embeddings=2048, hidden_act="gelu", rotary_pct=0.25,
    rotary_emb_base=10000, use_parallel_residual=True, layer_norm_eps=1e-05,
    tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, torch_dtype="float16",
)


def _pythia(size: str, params: int, vocab: int, hidden: int, layers: int, heads: int) -> Published:
    return _e(f"pythia-{size}", f"EleutherAI/pythia-{size}", "Pythia", params, _PYTHIA,
              vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden,
              num_hidden_layers=layers, num_attention_heads=heads)


PUBLISHED: tuple[Published, ...] = (
    # -- Llama 3.2: model card "1B (1.23B)", "3B (3.21B)"
    _e("llama-3.2-1b", "meta-llama/Llama-3.2-1B", "Llama 3.2", 1_235_814_400, _LLAMA32,
       hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
       num_key_value_heads=8, head_dim=64),
    _e("llama-3.2-3b", "meta-llama/Llama-3.2-3B", "Llama 3.2", 3_212_749_824, _LLAMA32,
       hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
       num_key_value_heads=8, head_dim=128),
    # -- Llama 3.1: the card says 8B / 70B / 405B; the hub's totals are 8.03B / 70.6B / 406B
    _e("llama-3.1-8b", "meta-llama/Llama-3.1-8B", "Llama 3.1", 8_030_261_248, _LLAMA31,
       hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
       num_key_value_heads=8),
    _e("llama-3.1-70b", "meta-llama/Llama-3.1-70B", "Llama 3.1", 70_553_706_496, _LLAMA31,
       hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
       num_key_value_heads=8),
    # Checked against the 405B-Instruct config; not confirmed for the base repo: eos 128001 and
    # torch_dtype (taken as in the 8B and 70B base configs).
    _e("llama-3.1-405b", "meta-llama/Llama-3.1-405B", "Llama 3.1", 405_853_388_800, _LLAMA31,
       hidden_size=16384, intermediate_size=53248, num_hidden_layers=126,
       num_attention_heads=128, num_key_value_heads=8),
    # -- Llama 3.3: only an Instruct model exists; the card says 70B, the hub 70.6B.
    # Not confirmed from a copy of its config.json: the eos list and torch_dtype (as in the
    # Llama 3.1 Instruct configs); the dimensions and rope_scaling are.
    _e("llama-3.3-70b", "meta-llama/Llama-3.3-70B-Instruct", "Llama 3.3", 70_553_706_496,
       _LLAMA31, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
       num_attention_heads=64, num_key_value_heads=8, eos_token_id=[128001, 128008, 128009]),
    # -- Qwen2.5 (base): model card "Number of Parameters: 0.49B"
    _e("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B", "Qwen2.5", 494_032_768, _QWEN25_SMALL,
       hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
       num_key_value_heads=2, max_position_embeddings=32768, sliding_window=32768,
       max_window_layers=24),
    # Card: 1.54B. sliding_window not confirmed (the copies seen print it as null, as
    # transformers does when use_sliding_window is false); the other keys are.
    _e("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B", "Qwen2.5", 1_543_714_304, _QWEN25_SMALL,
       hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
       num_key_value_heads=2, max_position_embeddings=131072, sliding_window=131072,
       max_window_layers=28),
    # Card: 3.09B
    _e("qwen2.5-3b", "Qwen/Qwen2.5-3B", "Qwen2.5", 3_085_938_688, _QWEN25_SMALL,
       hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
       num_key_value_heads=2, max_position_embeddings=32768, sliding_window=32768,
       max_window_layers=36),
    # Card: 7.61B
    _e("qwen2.5-7b", "Qwen/Qwen2.5-7B", "Qwen2.5", 7_615_616_512, _QWEN25_LARGE,
       hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
       num_key_value_heads=4, max_position_embeddings=131072, sliding_window=131072,
       max_window_layers=28, rms_norm_eps=1e-06),
    # Card: 14.7B
    _e("qwen2.5-14b", "Qwen/Qwen2.5-14B", "Qwen2.5", 14_770_033_664, _QWEN25_LARGE,
       hidden_size=5120, intermediate_size=13824, num_hidden_layers=48, num_attention_heads=40,
       num_key_value_heads=8, max_position_embeddings=131072, sliding_window=131072,
       max_window_layers=48, rms_norm_eps=1e-05),
    # Card: 32.5B, which this config (seen in three copies) does not give: it builds 32.76B,
    # as the hub's safetensors total (32.8B) also says; the card's figure is the odd one out.
    _e("qwen2.5-32b", "Qwen/Qwen2.5-32B", "Qwen2.5", 32_763_876_352, _QWEN25_LARGE,
       hidden_size=5120, intermediate_size=27648, num_hidden_layers=64, num_attention_heads=40,
       num_key_value_heads=8, max_position_embeddings=131072, sliding_window=131072,
       max_window_layers=64, rms_norm_eps=1e-05),
    # Card: 72.7B. Not confirmed (as in Qwen2.5-32B and Qwen2-72B, same layout):
    # max_position_embeddings, sliding_window, max_window_layers, rms_norm_eps.
    _e("qwen2.5-72b", "Qwen/Qwen2.5-72B", "Qwen2.5", 72_706_203_648, _QWEN25_LARGE,
       hidden_size=8192, intermediate_size=29568, num_hidden_layers=80, num_attention_heads=64,
       num_key_value_heads=8, max_position_embeddings=131072, sliding_window=131072,
       max_window_layers=80, rms_norm_eps=1e-05),
    # -- Qwen3: the -Base repos. Card: 0.6B. eos_token_id not confirmed (as in 1.7B/8B-Base).
    _e("qwen3-0.6b", "Qwen/Qwen3-0.6B-Base", "Qwen3", 596_049_920, _QWEN3_BASE,
       model_type="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
       num_attention_heads=16, num_key_value_heads=8, max_window_layers=28,
       tie_word_embeddings=True),
    # Card: 1.7B
    _e("qwen3-1.7b", "Qwen/Qwen3-1.7B-Base", "Qwen3", 1_720_574_976, _QWEN3_BASE,
       model_type="qwen3", hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
       num_attention_heads=16, num_key_value_heads=8, max_window_layers=28,
       tie_word_embeddings=True),
    # Card: 4.0B. Not confirmed for this -Base repo: max_position_embeddings, eos_token_id.
    _e("qwen3-4b", "Qwen/Qwen3-4B-Base", "Qwen3", 4_022_468_096, _QWEN3_BASE,
       model_type="qwen3", hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
       num_attention_heads=32, num_key_value_heads=8, max_window_layers=36,
       tie_word_embeddings=True),
    # Card: 8.2B
    _e("qwen3-8b", "Qwen/Qwen3-8B-Base", "Qwen3", 8_190_735_360, _QWEN3_BASE,
       model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
       num_attention_heads=32, num_key_value_heads=8, max_window_layers=36,
       tie_word_embeddings=False),
    # Card: 14.8B. Not confirmed for this -Base repo: max_position_embeddings, eos_token_id.
    _e("qwen3-14b", "Qwen/Qwen3-14B-Base", "Qwen3", 14_768_307_200, _QWEN3_BASE,
       model_type="qwen3", hidden_size=5120, intermediate_size=17408, num_hidden_layers=40,
       num_attention_heads=40, num_key_value_heads=8, max_window_layers=40,
       tie_word_embeddings=False),
    # Card: 32.8B. Released without a -Base repo: the post-trained config (40960, eos 151645).
    _e("qwen3-32b", "Qwen/Qwen3-32B", "Qwen3", 32_762_123_264, _QWEN3, model_type="qwen3",
       hidden_size=5120, intermediate_size=25600, num_hidden_layers=64, num_attention_heads=64,
       num_key_value_heads=8, max_window_layers=64, max_position_embeddings=40960,
       eos_token_id=151645, tie_word_embeddings=False),
    # Card: "30.5B in total and 3.3B activated". eos_token_id not confirmed for the -Base repo.
    _e("qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B-Base", "Qwen3", 30_532_122_624, _QWEN3_BASE,
       model_type="qwen3_moe", hidden_size=2048, intermediate_size=6144,
       moe_intermediate_size=768, num_experts=128, num_experts_per_tok=8, norm_topk_prob=True,
       decoder_sparse_step=1, mlp_only_layers=[], num_hidden_layers=48, num_attention_heads=32,
       num_key_value_heads=4, max_window_layers=48, tie_word_embeddings=False),
    # -- Mistral: the card says 7B, the hub 7.25B
    _e("mistral-7b-v0.3", "mistralai/Mistral-7B-v0.3", "Mistral", 7_248_023_552, _MISTRAL,
       model_type="mistral", vocab_size=32768),
    # Mistral's announcement: 46.7B total parameters, 12.9B used per token
    _e("mixtral-8x7b", "mistralai/Mixtral-8x7B-v0.1", "Mistral", 46_702_792_704, _MISTRAL,
       model_type="mixtral", vocab_size=32000, num_local_experts=8, num_experts_per_tok=2),
    # -- Gemma 2: report, Table 2, non-embedding 2,024,517,888 (+ embedding; the report's
    # counts a 256,128-entry vocabulary, the published config 256,000); the hub: 2.61B
    _e("gemma-2-2b", "google/gemma-2-2b", "Gemma 2", 2_614_341_888, _GEMMA2, hidden_size=2304,
       intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
       num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256),
    # Report: non-embedding 8,324,201,984; the hub: 9.24B
    _e("gemma-2-9b", "google/gemma-2-9b", "Gemma 2", 9_241_705_984, _GEMMA2, hidden_size=3584,
       intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
       num_key_value_heads=8, head_dim=256, query_pre_attn_scalar=256),
    # Report: non-embedding 26,047,480,320; the hub: 27.2B
    _e("gemma-2-27b", "google/gemma-2-27b", "Gemma 2", 27_227_128_320, _GEMMA2, hidden_size=4608,
       intermediate_size=36864, num_hidden_layers=46, num_attention_heads=32,
       num_key_value_heads=16, head_dim=128, query_pre_attn_scalar=144),
    # -- Gemma 3: report, Table 1: 302M embedding + 698M non-embedding
    _e("gemma-3-1b", "google/gemma-3-1b-pt", "Gemma 3", 999_885_952, _GEMMA3,
       vocab_size=262144, max_position_embeddings=32768, hidden_size=1152,
       intermediate_size=6912, num_hidden_layers=26, num_attention_heads=4,
       num_key_value_heads=1, rope_scaling=None, sliding_window=512),
    # Text decoders only. Report: 675M embedding (with the vision projector) + 3,209M
    # non-embedding, plus a 417M vision encoder: 4.3B for the whole published model
    _e("gemma-3-4b", "google/gemma-3-4b-pt", "Gemma 3", 3_880_263_168, _GEMMA3_MM,
       hidden_size=2560, intermediate_size=10240, num_hidden_layers=34),
    # Report: 1,012M + 10,759M (+ 417M vision encoder: 12.2B)
    _e("gemma-3-12b", "google/gemma-3-12b-pt", "Gemma 3", 11_766_034_176, _GEMMA3_MM,
       hidden_size=3840, intermediate_size=15360, num_hidden_layers=48, num_attention_heads=16,
       num_key_value_heads=8),
    # Report: 1,416M + 25,600M (+ 417M vision encoder: 27.4B)
    _e("gemma-3-27b", "google/gemma-3-27b-pt", "Gemma 3", 27_009_346_304, _GEMMA3_MM,
       hidden_size=5376, intermediate_size=21504, num_hidden_layers=62, num_attention_heads=32,
       num_key_value_heads=16, head_dim=128, query_pre_attn_scalar=168),
    # -- Phi (only instruction-tuned models were released): the card says 3.8B
    _e("phi-3-mini-4k", "microsoft/Phi-3-mini-4k-instruct", "Phi", 3_821_079_552, _PHI3,
       hidden_size=3072, intermediate_size=8192, num_hidden_layers=32, num_attention_heads=32,
       num_key_value_heads=32),
    # Card: 14B
    _e("phi-3-medium-4k", "microsoft/Phi-3-medium-4k-instruct", "Phi", 13_960_238_080, _PHI3,
       hidden_size=5120, intermediate_size=17920, num_hidden_layers=40, num_attention_heads=40,
       num_key_value_heads=10),
    # Card: 14B (the hub: 14.7B). bos/eos/pad as in the one copy seen (written by
    # transformers 4.47.0): not confirmed, a later revision may name other special tokens.
    _e("phi-4", "microsoft/phi-4", "Phi", 14_659_507_200, _PHI3, vocab_size=100352,
       hidden_size=5120, intermediate_size=17920, num_hidden_layers=40, num_attention_heads=40,
       num_key_value_heads=10, max_position_embeddings=16384,
       original_max_position_embeddings=16384, rope_theta=250000, sliding_window=None,
       bos_token_id=100257, eos_token_id=100257, pad_token_id=100257),
    # -- Pythia: the model cards give exact totals, which these equal digit for digit
    _pythia("160m", 162_322_944, 50304, 768, 12, 12),
    _pythia("410m", 405_334_016, 50304, 1024, 24, 16),
    _pythia("1b", 1_011_781_632, 50304, 2048, 16, 8),
    _pythia("1.4b", 1_414_647_808, 50304, 2048, 24, 16),
    _pythia("2.8b", 2_775_208_960, 50304, 2560, 32, 32),
    _pythia("6.9b", 6_857_302_016, 50432, 4096, 32, 32),
    _pythia("12b", 11_846_072_320, 50688, 5120, 36, 40),
)
# fmt: on
