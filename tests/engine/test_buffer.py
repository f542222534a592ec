"""Replay buffers: wrap-around, state round trip, mixed minibatches."""

import torch

from mbpo_cli.engine.buffer import ReplayBuffer, mixed_batch
from mbpo_cli.nn.batch import Batch


def _batch(start: int, n: int) -> Batch:
    v = torch.arange(start, start + n, dtype=torch.float32)
    return Batch(v[:, None].repeat(1, 3), v[:, None], v, v[:, None].repeat(1, 3) + 1, torch.zeros(n))


def test_buffer_wraps_around_and_keeps_newest() -> None:
    buf = ReplayBuffer(5, 3, 1, torch.device("cpu"))
    buf.add(_batch(0, 3))
    assert len(buf) == 3
    buf.add(_batch(3, 4))  # 7 added into capacity 5: 2..6 remain
    assert len(buf) == 5 and buf.ptr == 2
    assert buf.ordered().reward.tolist() == [2, 3, 4, 5, 6]
    buf.add(_batch(10, 12))  # larger than capacity: the last 5 are kept
    assert buf.ordered().reward.tolist() == [17, 18, 19, 20, 21]
    grown = buf.resized(8)
    assert grown.ordered().reward.tolist() == [17, 18, 19, 20, 21]
    shrunk = buf.resized(2)
    assert shrunk.ordered().reward.tolist() == [20, 21]
    gen = torch.Generator().manual_seed(0)
    sample = buf.sample(100, gen)
    assert set(sample.reward.tolist()) <= {17.0, 18.0, 19.0, 20.0, 21.0}


def test_buffer_state_roundtrip() -> None:
    buf = ReplayBuffer(4, 3, 1, torch.device("cpu"))
    buf.add(_batch(0, 6))
    other = ReplayBuffer(4, 3, 1, torch.device("cpu"))
    other.load_state_dict(buf.state_dict())
    assert other.ordered().reward.tolist() == buf.ordered().reward.tolist()


def test_a_wrapped_buffer_comes_back_from_its_checkpoint_in_the_same_slots() -> None:
    """Sampling draws physical slots: a wrapped ring buffer is restored with its layout (not oldest-first at slot 0);
    restored into a bigger buffer (a run extended with --steps) it keeps its transitions, oldest first."""
    buf = ReplayBuffer(4, 3, 1, torch.device("cpu"))
    buf.add(_batch(0, 3))
    buf.add(_batch(3, 3))  # slots hold 4, 5, 2, 3; the next write goes to slot 2
    saved = buf.checkpoint_state()
    same = ReplayBuffer.from_checkpoint(saved, 3, 1, torch.device("cpu"))
    assert (same.ptr, same.data.reward.tolist()) == (2, [4.0, 5.0, 2.0, 3.0])
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(same.sample(16, gen_a).reward, buf.sample(16, gen_b).reward)
    bigger = ReplayBuffer.from_checkpoint(saved, 3, 1, torch.device("cpu"), capacity=6)
    assert (bigger.capacity, bigger.ordered().reward.tolist()) == (6, [2.0, 3.0, 4.0, 5.0])


def test_mixed_batch_ratio() -> None:
    real = ReplayBuffer(100, 3, 1, torch.device("cpu"))
    real.add(_batch(0, 50))
    model = ReplayBuffer(100, 3, 1, torch.device("cpu"))
    model.add(_batch(1000, 50))
    gen = torch.Generator().manual_seed(0)
    batch = mixed_batch(real, model, 4, 256, 0.05, gen)
    assert batch.obs.shape == (4, 256, 3)
    assert int((batch.reward < 1000).sum(dim=1)[0]) == 12  # int(256 * 0.05) real rows
    empty = ReplayBuffer(10, 3, 1, torch.device("cpu"))
    assert bool((mixed_batch(real, empty, 2, 8, 0.05, gen).reward < 1000).all())
