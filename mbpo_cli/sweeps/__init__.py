"""Layer 5 (with `reports`): many runs at once: ablation plans, their scheduling and executors."""
