"""What a run took: the engine process, its events, NVML, and the Session they feed."""
