"""Replay buffers: preallocated tensors on the engine's device, sampled through explicit generators."""

from __future__ import annotations

from typing import Any

import torch

from mbpo_cli.nn.batch import FIELDS, Batch


class ReplayBuffer:
    """A ring buffer of transitions: obs `C x D`, act `C x A`, reward `C`, next_obs `C x D`, done `C`."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device) -> None:
        self.capacity = capacity
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = device
        self.data = Batch(
            obs=torch.zeros(capacity, obs_dim, device=device),
            act=torch.zeros(capacity, act_dim, device=device),
            reward=torch.zeros(capacity, device=device),
            next_obs=torch.zeros(capacity, obs_dim, device=device),
            done=torch.zeros(capacity, device=device),
        )
        self.ptr = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, batch: Batch) -> None:
        """Append `N` transitions, overwriting the oldest once full."""
        n = batch.obs.shape[0]
        if n >= self.capacity:
            batch = Batch(*(t[n - self.capacity :] for t in batch))
            n = self.capacity
        first = min(n, self.capacity - self.ptr)
        for store, new in zip(self.data, batch, strict=True):
            store[self.ptr : self.ptr + first] = new[:first]
            if first < n:
                store[: n - first] = new[first:]
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample_indices(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Uniform indices into the filled part, of the given shape."""
        return torch.randint(self.size, shape, generator=generator, device=self.device)

    def gather(self, idx: torch.Tensor) -> Batch:
        """The transitions at `idx` (any shape `S`): fields shaped `S x ...`."""
        return Batch(*(t[idx] for t in self.data))

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        """`n` transitions drawn uniformly with replacement."""
        return self.gather(self.sample_indices((n,), generator))

    def ordered(self) -> Batch:
        """All stored transitions, oldest first."""
        if self.size < self.capacity:
            return Batch(*(t[: self.size] for t in self.data))
        return Batch(*(torch.cat([t[self.ptr :], t[: self.ptr]]) for t in self.data))

    def resized(self, capacity: int) -> ReplayBuffer:
        """A new buffer of `capacity` holding the newest transitions of this one."""
        new = ReplayBuffer(capacity, self.obs_dim, self.act_dim, self.device)
        if self.size:
            new.add(self.ordered())
        return new

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The filled part (oldest first) and the capacity, for checkpoints."""
        ordered = self.ordered()
        return {"capacity": self.capacity, **{k: v.cpu() for k, v in zip(FIELDS, ordered, strict=True)}}

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        """Restore what `state_dict` saved (capacity must match)."""
        if state["capacity"] != self.capacity:
            raise ValueError(f"buffer capacity {state['capacity']} != {self.capacity}")
        self.ptr = self.size = 0
        tensors = [state[k] for k in FIELDS]
        assert all(isinstance(t, torch.Tensor) for t in tensors)
        self.add(Batch(*(t.to(self.device) for t in tensors)))  # type: ignore[union-attr]

    def checkpoint_state(self) -> dict[str, torch.Tensor | int]:
        """What a checkpoint holds of the buffer: `state_dict` plus the write position (sampling draws physical
        slots, so the layout matters)."""
        return {**self.state_dict(), "ptr": self.ptr}

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any], obs_dim: int, act_dim: int, device: torch.device,
                        capacity: int | None = None) -> ReplayBuffer:
        """A buffer of `capacity` (None: the saved one) holding what `checkpoint_state` saved, with the saved physical
        layout when the capacity is unchanged.

        `state_dict` stores the transitions oldest first; once a ring buffer has wrapped, its oldest transition sits
        at slot `ptr`, not 0, so the rows are rotated back into place (the indices drawn by `sample` would otherwise
        pick other transitions after a resume). A different capacity (a run extended with --steps) keeps the newest
        transitions, oldest first.
        """
        buffer = cls(int(saved["capacity"]), obs_dim, act_dim, device)
        buffer.load_state_dict({k: v for k, v in saved.items() if k != "ptr"})
        ptr = int(saved.get("ptr", 0))
        if buffer.size == buffer.capacity and ptr:
            for store in buffer.data:
                store.copy_(torch.roll(store, ptr, dims=0))
            buffer.ptr = ptr
        return buffer if capacity is None or buffer.capacity == capacity else buffer.resized(capacity)


def mixed_batch(
    real: ReplayBuffer, model: ReplayBuffer | None, groups: int, batch_size: int, real_ratio: float,
    generator: torch.Generator,
) -> Batch:
    """`groups` minibatches at once, fields `G x B x ...`: `int(B * real_ratio)` real rows, the rest model.

    With no model data yet (or `model` None), every row is real.
    """
    n_real = batch_size if model is None or len(model) == 0 else int(batch_size * real_ratio)
    real_part = real.gather(real.sample_indices((groups, n_real), generator))
    if n_real == batch_size:
        return real_part
    assert model is not None
    model_part = model.gather(model.sample_indices((groups, batch_size - n_real), generator))
    return Batch(*(torch.cat([a, b], dim=1) for a, b in zip(real_part, model_part, strict=True)))
