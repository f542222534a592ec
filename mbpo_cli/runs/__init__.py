"""Layer 4: runs as records and processes. One concept per module:

- :mod:`.layout`: the runs directory's layout (the registry file, run folders, the files in them, checkpoint names);
- :mod:`.registry`: the run registry (a package: SQL tables, records and run status, the database, the store);
- :mod:`.errors`: `RunError`, the runs layer's refusal, and a failure as a run's record holds it;
- :mod:`.process`: the run's lock, whether a run is alive, stop signals;
- :mod:`.reporting`: where a session's progress goes (`Reporter`, `SilentReporter`, `SafeReporter`);
- :mod:`.outage`: registry writes kept through a database outage, and recorded later;
- :mod:`.tensorboard`: TensorBoard event files, the live log of a session; :mod:`.wandb_tracking`: the same
  metrics to Weights & Biases (`--track`);
- :mod:`.checkpoint`: checkpoint files (written atomically, verified, read) and the best-policy file;
- :mod:`.session`: one process training one run (events to registry, checkpoints and reporter);
- :mod:`.start`: starting a run (or continuing a named one); :mod:`.resume`: resuming a run;
- :mod:`.policy`: a run's checkpoint as an acting policy; :mod:`.evaluation`: `mbpo eval`'s episodes and record;
- :mod:`.python_envs`: a run's environment made by a Python factory or instance (`mbpo_cli.api.train(env=...)`);
- :mod:`.video`, :mod:`.video_child`: `mbpo eval --video`, filmed in a child process;
- :mod:`.policy_export`, :mod:`.export_verification`: `mbpo export` and its checks (`--bench`: `bench.latency`);
- :mod:`.outputs`: the files and folders a command may write.
"""
