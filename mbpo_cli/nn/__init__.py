"""Layer 1 (with `config`): batched MLPs, CUDA-graph capture of training steps, the transition `Batch`."""
