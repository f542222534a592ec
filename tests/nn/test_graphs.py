"""The SAC update's CUDA-graph path: capture must not change what is learned.

On CPU these check the pieces the capture relies on (the update as a pure function of batch and noise,
undoing warm-up steps in place, the agreement check, the CPU fallback); on a CUDA machine the last test
captures for real and compares replayed updates with eager ones.
"""

import copy

import pytest
import torch

from mbpo_cli.agents.sac import SAC
from mbpo_cli.config.schema import ModelConfig, SACConfig
from mbpo_cli.models.ensemble import GaussianEnsemble, make_model_optimizer
from mbpo_cli.nn.batch import Batch
from mbpo_cli.nn.graphs import TrainingState

OBS, ACT, B = 5, 2, 64


def _agent(device: str = "cpu") -> SAC:
    torch.manual_seed(0)
    return SAC(OBS, ACT, SACConfig(hidden=32)).to(device)


def _batch(seed: int, device: str = "cpu") -> Batch:
    g = torch.Generator(device=device).manual_seed(seed)
    return Batch(
        torch.randn(1, B, OBS, generator=g, device=device),
        torch.rand(1, B, ACT, generator=g, device=device) * 2 - 1,
        torch.randn(1, B, generator=g, device=device),
        torch.randn(1, B, OBS, generator=g, device=device),
        (torch.rand(1, B, generator=g, device=device) < 0.1).float(),
    )


def _params(agent: SAC) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_update_is_a_function_of_batch_and_noise() -> None:
    """`update` draws its noise and then is exactly `update_with_noise` (what a graph replays)."""
    one, two = _agent(), _agent()
    for step in range(3):
        batch = _batch(step)
        g1, g2 = torch.Generator().manual_seed(step), torch.Generator().manual_seed(step)
        one.update(batch, [g1])
        two.update_with_noise(batch, torch.randn(1, 2, B, ACT, generator=g2))
    assert _same(_params(one), _params(two))


def test_restore_undoes_updates_in_place_including_fresh_adam_state() -> None:
    """Warm-up updates on a fresh agent, undone, leave it identical to an agent never updated."""
    agent, fresh = _agent(), _agent()
    ids = [id(p) for p in agent.parameters()]
    saved = TrainingState(agent, list(agent.optimizers().values()))
    for step in range(3):
        agent.update(_batch(step), [torch.Generator().manual_seed(step)])
    saved.restore()
    assert [id(p) for p in agent.parameters()] == ids
    assert _same(_params(agent), _params(fresh))
    for step in range(4):
        agent.update(_batch(10 + step), [torch.Generator().manual_seed(step)])
        fresh.update(_batch(10 + step), [torch.Generator().manual_seed(step)])
    assert _same(_params(agent), _params(fresh))


def test_restore_brings_back_existing_adam_moments() -> None:
    agent = _agent()
    agent.update(_batch(0), [torch.Generator().manual_seed(0)])
    twin = copy.deepcopy(agent)
    saved = TrainingState(agent, list(agent.optimizers().values()))
    agent.update(_batch(1), [torch.Generator().manual_seed(1)])
    saved.restore()
    agent.update(_batch(2), [torch.Generator().manual_seed(2)])
    twin.update(_batch(2), [torch.Generator().manual_seed(2)])
    assert _same(_params(agent), _params(twin))


def test_agreement_check_sees_a_difference() -> None:
    agent = _agent()
    saved = TrainingState(agent, list(agent.optimizers().values()))
    assert saved.max_error(agent) == 0.0
    agent.update(_batch(0), [torch.Generator().manual_seed(0)])
    assert saved.max_error(agent) > 1.0


def test_cpu_stays_eager_and_unchanged() -> None:
    agent, fresh = _agent(), _agent()
    mode = agent.use_cuda_graph(_batch(0), [torch.Generator().manual_seed(0)])
    assert agent.graph is None
    assert mode.startswith("eager")
    assert _same(_params(agent), _params(fresh))


def test_cpu_model_training_stays_eager_and_unchanged() -> None:
    torch.manual_seed(0)
    model = GaussianEnsemble(OBS, ACT, ModelConfig(hidden=16))
    before = [p.detach().clone() for p in model.parameters()]
    mode = model.use_cuda_graph(make_model_optimizer(model), torch.randn(7, 8, OBS + ACT), torch.randn(7, 8, OBS + 1))
    assert model.graph is None and mode.startswith("eager")
    assert _same(before, [p.detach() for p in model.parameters()])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_replays_match_eager_updates() -> None:
    graphed, eager = _agent("cuda"), _agent("cuda")
    mode = graphed.use_cuda_graph(_batch(0, "cuda"), [torch.Generator(device="cuda").manual_seed(0)])
    assert graphed.graph is not None, mode
    assert _same(_params(graphed), _params(eager))
    for step in range(20):
        batch = _batch(100 + step, "cuda")
        graphed.update(batch, [torch.Generator(device="cuda").manual_seed(step)])
        noise = torch.randn(1, 2, B, ACT, generator=torch.Generator(device="cuda").manual_seed(step), device="cuda")
        eager.update_with_noise(batch, noise)
    for a, b in zip(_params(graphed), _params(eager), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_model_steps_match_eager_steps() -> None:
    def model() -> tuple[GaussianEnsemble, torch.optim.Optimizer]:
        torch.manual_seed(0)
        m = GaussianEnsemble(OBS, ACT, ModelConfig(hidden=32)).to("cuda")
        return m, make_model_optimizer(m)

    (graphed, g_opt), (eager, e_opt) = model(), model()
    gen = torch.Generator(device="cuda").manual_seed(0)
    x, y = torch.randn(7, 32, OBS + ACT, generator=gen, device="cuda"), torch.randn(7, 32, OBS + 1, generator=gen,
                                                                                   device="cuda")
    mode = graphed.use_cuda_graph(g_opt, x, y)
    assert graphed.graph is not None, mode
    for _ in range(10):
        x.normal_(generator=gen)
        y.normal_(generator=gen)
        torch.testing.assert_close(graphed.train_step(g_opt, x, y), eager.train_step(e_opt, x, y), rtol=1e-4,
                                   atol=1e-5)
    for a, b in zip(graphed.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
