"""`mbpo presets`: the shipped presets, each with its task and the hyperparameters that tell them apart."""

from __future__ import annotations

from typing import Any

import typer
from rich import box
from rich.table import Table

from mbpo_cli.cli import common
from mbpo_cli.cli.common import JsonOpt, emit_json, handled
from mbpo_cli.config.files import preset_names, preset_path
from mbpo_cli.config.resolve import resolve_config


def _summary(name: str) -> dict[str, Any]:
    """One preset's task and distinguishing values (from its resolved config)."""
    config = resolve_config(preset=name)
    first_epoch, last_epoch, first_k, last_k = config.rollout.schedule
    return {"name": name, "env_id": config.env.id, "algo": config.algo, "agent": config.agent.name,
            "steps": config.train.steps, "epoch_length": config.train.epoch_length,
            "updates_per_step": config.agent.updates_per_step, "termination": config.env.termination,
            "rollout_schedule": [first_epoch, last_epoch, first_k, last_k], "file": str(preset_path(name))}


def presets(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the presets: `mbpo train --preset NAME` runs one; `mbpo train --preset NAME --print-config` shows all
    of its values.

    Example: mbpo presets
    """
    with handled(ctx):
        rows = [_summary(name) for name in preset_names()]
        if as_json:
            emit_json(rows)
            return
        table = Table(title="Presets (the paper's tasks with the official hyperparameters)", box=box.SIMPLE_HEAD,
                      pad_edge=False, collapse_padding=True,
                      caption="k: model rollout length, growing from the first to the second value over those epochs "
                              "(counted after the exploration steps); G: agent updates per env step; all values: "
                              "mbpo train --preset NAME --print-config")
        for column in ("preset", "env", "agent", "env steps", "G", "k schedule"):
            table.add_column(column, justify="right" if column in ("env steps", "G") else "left",
                             no_wrap=column in ("preset", "env steps", "G"), overflow="fold")
        for r in rows:
            first_epoch, last_epoch, first_k, last_k = r["rollout_schedule"]
            if r["algo"] != "mbpo":
                schedule = "(no model)"
            elif first_k == last_k:
                schedule = str(first_k)
            else:
                schedule = f"{first_k}-{last_k} over epochs {first_epoch}-{last_epoch}"
            table.add_row(r["name"], r["env_id"], r["agent"], f"{r['steps']:,}", str(r["updates_per_step"]),
                          schedule)
        common.out.print(table)
