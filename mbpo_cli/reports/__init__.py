"""Layer 5 (with `sweeps`): statistics, the compare report and plots, computed from registry records."""
