"""A plausible, fully deterministic event stream of a training run (tests and demos): full
fine-tuning with AdamW on a CUDA device, activations saved layer by layer in forward and
freed in backward while the gradients are made, the optimizer's states made in step 1.

The figures are invented for the screens, not measured: never report them.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramtui.measure import events as ev
from vramtui.measure.session_view import NvmlSample
from vramtui.runspec.train_spec import TrainSpec
from vramtui.testing.synthetic import Item

MB = 10**6


@dataclass(frozen=True)
class Shape:
    """The invented model: its bytes and how long each phase takes."""

    weights: int = 1000 * MB  # every parameter trainable (full fine-tuning)
    layers: int = 8
    layer_activations: int = 120 * MB  # saved for backward, a layer
    context: int = 500 * MB  # NVML process - reserved
    slack: int = 300 * MB  # reserved - allocated at the peak
    phase_s: tuple[float, float, float, float] = (0.4, 0.4, 0.15, 0.05)


class _Stream:
    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.items: list[Item] = []
        self.reserved = 0
        self.peak = 0

    def sample(self, t: float, phase: str, allocated: int) -> int:
        self.reserved = max(self.reserved, allocated + self.shape.slack)
        self.peak = max(self.peak, allocated)
        self.items.append(ev.Sample(None, t, phase, allocated, self.reserved, allocated, None))
        nvml = self.reserved + self.shape.context
        self.items.append(NvmlSample(t, nvml, nvml + 200 * MB, 80 * 10**9))
        return allocated

    def step(self, spec: TrainSpec, n: int, t: float) -> float:
        """Step n from time t: its phases, samples and TrainStep; the time it ends."""
        s, peaks, t_start = self.shape, {}, t
        w = s.weights
        states = 2 * w if n > 1 else 0
        fwd_s, bwd_s, opt_s, zero_s = s.phase_s
        self.items.append(ev.Phase("forward", t))
        per = fwd_s / s.layers
        top = [self.sample(t + per * k, "forward", w + states + k * s.layer_activations)
               for k in range(s.layers + 1)]  # fmt: skip
        peaks["forward"] = max(top)
        t += fwd_s
        self.items.append(ev.Phase("backward", t))
        per = bwd_s / s.layers
        held = [
            self.sample(t + per * k, "backward", w + states + (s.layers - k) * s.layer_activations
                        + w * k // s.layers + 40 * MB)
            for k in range(s.layers + 1)
        ]  # fmt: skip
        peaks["backward"] = max(held)
        t += bwd_s
        self.items.append(ev.Phase("optimizer", t))
        peaks["optimizer"] = self.sample(t + opt_s / 2, "optimizer", 4 * w + 60 * MB)
        t += opt_s
        self.items.append(ev.Phase("zero_grad", t))
        peaks["zero_grad"] = self.sample(t + zero_s / 2, "zero_grad", 3 * w)
        t += zero_s
        self.items.append(
            ev.TrainStep(
                step=n, t_start=t_start, t_end=t, tokens=spec.tokens_per_step, loss=10.0 - n,
                phase_peaks=dict(peaks), gradient_bytes=w, optimizer_state_bytes=2 * w,
                activation_bytes=s.layers * s.layer_activations,
                forward_growth_bytes=s.layers * s.layer_activations,
            )
        )  # fmt: skip
        return t


def synthetic_training(spec: TrainSpec, shape: Shape | None = None) -> list[Item]:
    """Every event of `spec.steps` training steps of an invented model on an H100, in
    order, times from 0."""
    shape = shape or Shape()
    stream = _Stream(shape)
    hello = ev.Hello(4242, "cuda:0", "cuda", "NVIDIA H100 80GB HBM3", None, 80 * 10**9,
                     "torch.cuda", {"torch": "2.13.0"})  # fmt: skip
    loaded = ev.Loaded(shape.weights, shape.weights // 2, "bfloat16", 4096, shape.layers,
                       2048, 8, 64, spec.seq, 1.0)  # fmt: skip
    params = shape.weights // 2
    stream.items += [hello, ev.Phase("load", 0.5)]
    stream.sample(1.5, "load", shape.weights)
    stream.items += [loaded, ev.TrainLoaded(0, shape.weights, 0, params, "torch.AdamW", False)]
    t = 2.0
    for n in range(1, spec.steps + 1):
        t = stream.step(spec, n, t)
    train_s = t - 2.0
    tokens = spec.tokens_per_step * spec.steps
    done = ev.Done(tokens, 1.0, 1.0, train_s - 1.0, train_s, tokens / train_s, None, stream.peak)
    stream.items += [ev.Phase("done", t), done]
    return stream.items
