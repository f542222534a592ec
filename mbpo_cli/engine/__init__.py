"""Layer 3: the training loop, run state, buffers, rollouts and model environments, real episodes, environments."""
