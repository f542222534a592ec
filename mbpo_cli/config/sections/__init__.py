"""The run configuration's sections, one frozen dataclass each (`mbpo_cli.config.schema` gathers them)."""
