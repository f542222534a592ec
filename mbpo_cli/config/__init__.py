"""Layer 1 (with `nn`): the run configuration, its schema and loading. Imports nothing of mbpo_cli."""
