"""What a run will take, before it runs: the estimator and its allocator model. Pure Python."""
