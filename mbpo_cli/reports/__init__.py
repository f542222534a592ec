"""Layer 5 (with `sweeps`): what the report commands compute from registry records: the runs named on a command
line (`refs`), statistics (`stats`), the compare report (`compare`, one module per table), plots, a run's model
diagnostics, the metrics export (`metrics_export`: TensorBoard event files, CSV) and the x axis of a comparison
(`axis`: env steps or training wall time)."""
