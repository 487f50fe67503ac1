"""Fine-tuning memory, predicted: a training step traced on the meta device
(step_tracer.py, in a child process), the optimizer's states by type
(optimizer_states.py) and the step replayed on the allocator model (replay.py)."""
