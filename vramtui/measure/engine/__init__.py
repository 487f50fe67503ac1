"""The engine: each run in a fresh child process.

`child`, `runner`, `model`, `probes`, `sampler` and `device` run inside that
process and are the only modules that import torch and transformers;
`process` is the parent's handle on it and imports neither; `faults` holds
the hooks the fault tests set.
"""
