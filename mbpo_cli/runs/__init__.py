"""Layer 4: runs as records and processes: the registry, checkpoints, the training session, evaluation."""
