"""Benchmarks, above the engine and the runs (`mbpo bench`, `mbpo export --bench`), in one home for timing:

  timing.py       how a region is timed (warm-up, repeats, device synchronization) and the machine's matmul floor
  components.py   the engine's components at a preset's shapes (agent update, model step and retrain, rollout step,
                  env step, evaluation episode)
  end_to_end.py   a segment of training steps timed end to end, with each model retrain in it
  latency.py      an exported policy's latency for one observation, per runtime
"""
