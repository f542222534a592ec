"""`mbpo compare`: honest sample-efficiency reports of groups of runs against a baseline (usually the base
agent without a model).

Everything here except :func:`load_curves` (which reads the registry) is a pure function of run records and
their evaluation curves, returning frozen dataclasses; the CLI only renders. All aggregates are over seeds, i.e.
runs of one group. Each definition lives with the table it serves:

* :mod:`.groups`: which runs form a group (the seeds of one experiment) and its name.
* :mod:`.curves`: eval curves (over env steps, or over training seconds with ``--x wall``: see
  :mod:`mbpo_cli.reports.axis`), a return between evaluations (interpolated, never extrapolated), a group's
  final step.
* :mod:`.comparison`: the groups with their curves and each environment's baseline.
* :mod:`.returns`: returns at milestones (mean, IQM, bootstrap CI of the IQM).
* :mod:`.efficiency`: steps to reach and hold a threshold, the ratio against the baseline, normalized AUC.
* :mod:`.wall`: wall-clock time and env steps per second.
* :mod:`.final`: final returns and the probability of improvement over the baseline.
* :mod:`.report`: the report assembled from those tables, with its notes and warnings.
* :mod:`.output`: the report as JSON, CSV rows and plot data.
"""

from mbpo_cli.reports.axis import Axis
from mbpo_cli.reports.compare.comparison import is_model_free
from mbpo_cli.reports.compare.curves import STEP_AXIS, VALUES_AT_STEPS, WALL_AXIS, Curve, load_curves, values_rule
from mbpo_cli.reports.compare.efficiency import THRESHOLD_RULE, AucInterval, EfficiencyRow, threshold_rule
from mbpo_cli.reports.compare.final import MIN_RUNS_FOR_P, FinalRow
from mbpo_cli.reports.compare.groups import Group, config_signature, group_runs
from mbpo_cli.reports.compare.output import (
    REFERENCE_RULE,
    WALL_CSV_HEADER,
    long_rows,
    model_return_data,
    plot_data,
    report_to_dict,
    wall_long_rows,
)
from mbpo_cli.reports.compare.report import BOOTSTRAP_SEED, N_RESAMPLES, Report, build_report
from mbpo_cli.reports.compare.returns import PAPER_BUDGETS, MilestoneRow, paper_budgets, parse_seconds, parse_steps
from mbpo_cli.reports.compare.wall import WallRow
from mbpo_cli.reports.refs import ReportError

__all__ = [
    "BOOTSTRAP_SEED",
    "MIN_RUNS_FOR_P",
    "N_RESAMPLES",
    "PAPER_BUDGETS",
    "REFERENCE_RULE",
    "STEP_AXIS",
    "THRESHOLD_RULE",
    "VALUES_AT_STEPS",
    "WALL_AXIS",
    "WALL_CSV_HEADER",
    "AucInterval",
    "Axis",
    "Curve",
    "EfficiencyRow",
    "FinalRow",
    "Group",
    "MilestoneRow",
    "Report",
    "ReportError",
    "WallRow",
    "build_report",
    "config_signature",
    "group_runs",
    "is_model_free",
    "load_curves",
    "long_rows",
    "model_return_data",
    "paper_budgets",
    "parse_seconds",
    "parse_steps",
    "plot_data",
    "report_to_dict",
    "threshold_rule",
    "values_rule",
    "wall_long_rows",
]
