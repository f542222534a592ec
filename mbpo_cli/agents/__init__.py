"""Layer 2 (with `models`): the base agents that MBPO trains on model data."""
