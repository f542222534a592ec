"""The run's section: its length, seed, device and what it writes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from mbpo_cli.config.rules import NON_NEGATIVE, POSITIVE, AtMost, Matches, Within, checked

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d{1,3})?")
"""The values of train.device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N."""
MAX_SEED = 2**31 - 1
"""Largest seed (every generator is seeded from it with room to spare in 64 bits)."""
MAX_THREADS = 1024
"""Largest `train.threads` (torch crashes, rather than refuses, at absurd counts)."""
DEVICE = Matches(DEVICE_PATTERN, "auto, cpu, cuda or cuda:N")
"""The rule of `train.device`."""


@dataclass(frozen=True)
class TrainConfig:
    """The run."""

    steps: int = field(default=100_000, metadata=checked(POSITIVE))
    """Total real environment steps (random exploration included)."""
    epoch_length: int = field(default=1000, metadata=checked(POSITIVE))
    """Real steps per epoch (evaluation, metrics and checkpoint at each epoch end)."""
    init_steps: int = field(default=5000, metadata=checked(NON_NEGATIVE))
    """Initial steps with a uniform random policy (at least 1 for mbpo; whole DHMBPO iterations for dhmbpo)."""
    eval_episodes: int = field(default=5, metadata=checked(NON_NEGATIVE))
    """Deterministic evaluation episodes at each epoch end."""
    seed: int = field(default=0, metadata=checked(Within(0, MAX_SEED)))
    """Seed for torch, numpy and the environments (0 to 2**31 - 1)."""
    device: str = field(default="auto", metadata=checked(DEVICE))
    """auto (CUDA when present), cpu, cuda or cuda:N."""
    threads: int | None = field(default=None, metadata=checked(POSITIVE, AtMost(MAX_THREADS)))
    """CPU threads for torch (None: all cores; at most 1024)."""
    pipeline: bool = False
    """Retrain the model in a worker thread while the agent keeps training (MBPO runs): the rollouts at each
    point where the model is due come from the model trained at the previous such point (one `train_freq`
    staler than the sequential loop), and the threads are split between the two activities. Seeded runs stay
    exactly reproducible."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Matmul precision of float32 tensors: fp32, or bf16 (`torch.set_float32_matmul_precision("medium")`: bf16
    matmuls through oneDNN on a CPU with bf16 instructions, TF32 on CUDA). Faster, and changes results."""
    cuda_graphs: bool = True
    """On CUDA, run each agent update as a captured CUDA graph (checked against eager at capture; falls
    back to eager, with the reason shown, when capture is not possible). No effect on CPU."""
    checkpoint_every: int = field(default=1, metadata=checked(POSITIVE))
    """Epochs between checkpoints."""
    keep_checkpoints: int = field(default=2, metadata=checked(POSITIVE))
    """Periodic checkpoints kept on disk (plus the best-eval policy)."""
    tensorboard: bool = False
    """Also write each epoch's metrics as TensorBoard event files under `runs/<run-id>/tensorboard/` while training
    (needs the optional `tensorboard` package: `pip install 'mbpo-cli[tensorboard]'`). `mbpo runs export` writes
    them for any recorded run afterwards."""
    track: bool = False
    """Also log each epoch's metrics (under the same sections as TensorBoard's), the config and the run's group to
    Weights & Biases while training, as a W&B run that a resume continues (needs the optional `wandb` package:
    `pip install 'mbpo-cli[wandb]'`). Where it goes is wandb's own environment: WANDB_PROJECT (default `mbpo`),
    WANDB_ENTITY, WANDB_MODE (`offline` keeps it on disk for `wandb sync`), WANDB_DIR (default: the run folder)."""
