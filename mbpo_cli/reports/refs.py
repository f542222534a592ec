"""The runs a report command is given (`mbpo compare`, `mbpo runs export`: group names, run ids, id prefixes or run
names) and the error of bad report input."""

from __future__ import annotations

from collections.abc import Sequence

from mbpo_cli.runs.registry import Registry, RegistryError, RunInfo


class ReportError(ValueError):
    """Bad input to a report command (one line; the CLI exits 2)."""


def resolve_refs(registry: Registry, refs: Sequence[str]) -> list[RunInfo]:
    """The runs named by ``refs`` (group names, run ids, id prefixes or run names), first mention first."""
    groups = set(registry.group_names())
    found: dict[str, RunInfo] = {}
    for ref in refs:
        if ref in groups:
            members = registry.runs_in_group(ref)
            if not members:
                raise ReportError(f"group {ref!r} has no runs in {registry.where}")
        else:
            try:
                members = [registry.get_run(ref)]
            except RegistryError as err:
                if str(err).startswith("no run "):
                    raise ReportError(f"no run or group {ref!r} in {registry.where}") from None
                raise
        for run in members:
            found.setdefault(run.id, run)
    return list(found.values())
