"""TensorBoard event files: the optional writer, and the live log a training session keeps with `train.tensorboard`.

The writer is PyTorch's own `torch.utils.tensorboard.SummaryWriter` (torch is already a dependency); it needs the
`tensorboard` package, an optional extra (`pip install 'mbpo-cli[tensorboard]'`), which also brings the viewer.
Without it, asking for event files is a one-line error (:class:`TensorBoardMissing`, exit 2) before anything runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from mbpo_cli.config.load import ConfigError
from mbpo_cli.config.metrics import tensorboard_tag
from mbpo_cli.runs.layout import LIVE_FOLDER

INSTALL_HINT = "pip install 'mbpo-cli[tensorboard]'"


class TensorBoardMissing(ConfigError):
    """Event files were asked for but the `tensorboard` package is not installed (one line; the CLI exits 2)."""


def summary_writer(what: str) -> Any:
    """The `SummaryWriter` class, or TensorBoardMissing naming `what` asked for it (e.g. `train.tensorboard`)."""
    try:
        import tensorboard  # noqa: F401 - torch.utils.tensorboard needs it; asked first to name it when absent
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TensorBoardMissing(f"{what} needs the tensorboard package: {INSTALL_HINT}") from None
    return SummaryWriter


def live_folder(run_folder: Path) -> Path:
    """Where a run's live event files go."""
    return run_folder / LIVE_FOLDER


class LiveTensorBoard:
    """A training session's event files: each epoch's metrics as scalars at their env step, flushed at once, each
    tagged `<namespace>/<key>` (`eval/eval_return`, see `mbpo_cli.config.metrics`).

    A resumed run appends new event files to the same folder; they start with a purge marker at the first step
    after the checkpoint, so TensorBoard drops what the interrupted session logged past it (the registry drops
    those rows too). Writing must never stop training: the first failure (a full disk) is reported through
    `warn` and ends the log; the registry still holds every metric (`mbpo runs export` rewrites them).
    """

    def __init__(self, folder: Path, start_step: int, warn: Callable[[str], None]) -> None:
        """Open the log in `folder` for a session that starts at env step `start_step`."""
        writer_class = summary_writer("train.tensorboard")
        self.folder = folder
        self.warn = warn
        self.writer: Any = None
        try:
            self.writer = writer_class(str(folder), purge_step=start_step + 1 if start_step > 0 else None)
        except OSError as err:
            self._fail(err)

    def write(self, env_step: int, metrics: Mapping[str, float]) -> None:
        """One epoch's metrics at `env_step` (NaN and infinite values left out, as the registry leaves them)."""
        if self.writer is None:
            return
        try:
            for key, value in metrics.items():
                if math.isfinite(value):  # as in the registry, which keeps no value that is not a number
                    self.writer.add_scalar(tensorboard_tag(key), float(value), env_step)
            self.writer.flush()
        except OSError as err:
            self._fail(err)

    def close(self) -> None:
        """Flush and close the event file (safe to call twice)."""
        if self.writer is None:
            return
        try:
            self.writer.close()
        except OSError as err:
            self._fail(err)
        self.writer = None

    def _fail(self, err: OSError) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            with suppress(OSError):
                writer.close()
        self.warn(f"warning: cannot write TensorBoard event files in {self.folder} ({err.strerror or err}); "
                  "no more are written this session, the registry keeps every metric")
