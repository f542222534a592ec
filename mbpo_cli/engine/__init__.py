"""Layer 3: the training loop, run state, buffers, rollouts, environments and component benchmarks."""
