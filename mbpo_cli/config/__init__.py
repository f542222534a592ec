"""Layer 1 (with `nn`): the run configuration, its schema and loading. Imports nothing of mbpo_cli above it.

One concept a module: `schema` (the Config, gathering the `sections`: task, model, agents, dhmbpo, train, each field
declaring its `rules`), `errors` (ConfigError and how a user's values are echoed), `yaml_reader` (the strict loader
of a user's YAML), `files` (bundled presets and `base:` chains), `mappings` (merging and diffing raw configs),
`migrate` (old keys), `env_wrappers` (the names `env.wrappers` may give), `overrides` (`--set` and typed
flags), `coerce` (raw data into typed sections), `validation`
(every rule checked), `env_defaults` (the defaults of `--env`), `provenance` (where each value came from),
`resolve` (the command line's config), `load` (one-call loading, and the names callers outside the layer import),
`metrics` (the metric keys).
"""
