"""`mbpo tune`: a hyperparameter study with Optuna, each trial a normal run in the registry.

A study is kept in the registry's own database, in two parts: the registry group of kind ``tune`` holds the study's
definition (:class:`.spec.StudySpec`, in the group's info) and every trial's run (variant ``trial-N``); Optuna's
tables (``studies``, ``trials``, ``trial_params``, ``trial_intermediate_values``, ...: names the registry never uses,
which a test checks) hold the trials' parameters, the values reported to the pruner and the trials' states. One
database means one URL (the SQLite file ``RUNS_DIR/registry.db`` or ``$MBPO_REGISTRY_URL``'s PostgreSQL), one thing
to back up or copy with the runs directory, and a study that is found wherever its runs are.

Trials execute as ``mbpo train`` processes through an ablation's executors (`mbpo_cli.sweeps.executors`: local
processes or Ray tasks). The tuner follows each trial's run in the registry: every new evaluation is reported to
Optuna (the objective so far, at the run's env step), and a trial the pruner stops is told ``PRUNED`` at once and its
run asked to stop as Ctrl-C would (it checkpoints and ends ``interrupted``; ``mbpo resume`` could continue it).
Ctrl-C stops the running trials the same way and leaves them ``RUNNING`` in Optuna: ``mbpo tune --resume STUDY``
continues their runs, trains again those that had nothing to resume from, and asks for new trials until the study
has all of its trials.

The study's definition (no Optuna imported):

- :mod:`.study_file`: a study file as read, its base and settings validated on their own;
- :mod:`.space`: the search space (each searched config key), its grid and its check against the fixed config;
- :mod:`.objective`: what the trials are scored by; :mod:`.search`: the sampler and the pruner;
- :mod:`.checks`: the checks of a study file's numbers, and the most trials a study may ask for;
- :mod:`.spec`: the definition as a whole, built from a study file, each trial's config, stored as plain data.

Its running (Optuna imported when used):

- :mod:`.storage`: the study in the registry's database (its group and its Optuna study, sampler and pruner);
- :mod:`.layout`: the study's folder (trial configs, logs, lock) and its trials' run names;
- :mod:`.trials`: one trial as the tuner knows it (its state, its run so far);
- :mod:`.planning`: new trials asked of the sampler, and a stopped session's trials matched with their runs;
- :mod:`.following`: a trial's run followed (evaluations reported, pruning) and its end recorded;
- :mod:`.execution`: the loop running the trials on an executor, ``jobs`` at a time;
- :mod:`.best`: the best trial and its config as the YAML `mbpo train --config` takes.
"""
