"""Layer 2 (with `agents`): the learned and known models of the environment (dynamics, termination)."""
