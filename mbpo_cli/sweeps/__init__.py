"""Layer 5 (with `reports`): many runs at once: ablation plans (`ablation`, `variants`), the executors that run them
(`executors`: local processes or Ray tasks), and `mbpo tune`'s studies (the package `tune`, on the same executors)."""
