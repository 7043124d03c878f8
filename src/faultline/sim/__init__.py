"""The timed contention simulator: the model on N simulated CPUs (SimPy)."""
