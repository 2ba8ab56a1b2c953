"""client.privacy.noise: the CSPRNG and torch sources of DP-SGD's noise and Poisson sampling.

Statistical checks use ≥ 10⁵ draws and bounds a correct source fails about once in 10⁶ runs:
means within 5 standard errors, standard deviations within 5 standard errors of the sample std
(σ/√(2n)), and Kolmogorov–Smirnov tests at p > 1e-6. At n = 2·10⁵ the KS test at that level
rejects a CDF off by 0.006 anywhere, e.g. a Gaussian whose std is 2.5 % wrong.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from client.privacy.noise import (
    CSPRNG,
    OS_SEEDED,
    SEEDED,
    CsprngNoise,
    NoiseSource,
    TorchNoise,
    resolve_noise,
)

N = 200_000
P_MIN = 1e-6
SIGMA, C = 1.3, 0.7


def _check_gaussian(draws: torch.Tensor, std: float) -> None:
    x = draws.double().flatten()
    n = len(x)
    assert abs(float(x.mean())) < 5 * std / math.sqrt(n)
    assert abs(float(x.std()) - std) < 5 * std / math.sqrt(2 * n)
    assert stats.kstest(x.numpy(), stats.norm(scale=std).cdf).pvalue > P_MIN


def test_the_sources_say_what_they_are() -> None:
    assert (CsprngNoise().name, CsprngNoise.secure) == (CSPRNG, True) == ("csprng", True)
    assert (TorchNoise().name, TorchNoise().secure) == (OS_SEEDED, False) == ("os-seeded", False)
    assert TorchNoise(seed=1).name == SEEDED == "seeded (insecure, tests only)"


def test_csprng_uniforms_have_all_53_mantissa_bits() -> None:
    u = CsprngNoise().uniform(N)
    assert u.dtype == torch.float64 and float(u.min()) >= 0.0 and float(u.max()) < 1.0
    k = u * 2.0**53
    assert torch.equal(k, k.floor())  # exactly k·2⁻⁵³
    odd = float((k.long() % 2).double().mean())  # the 53rd bit is a fair coin
    assert abs(odd - 0.5) < 5 * 0.5 / math.sqrt(N)
    assert stats.kstest(u.numpy(), "uniform").pvalue > P_MIN


def test_box_muller_gives_standard_normals() -> None:
    _check_gaussian(CsprngNoise().standard_normal(N), 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_csprng_noise_has_mean_zero_and_std_sigma_c(dtype: torch.dtype) -> None:
    """The secure draw is (z1 + z2 + z3 + z4) / 2: still N(0, (σC)²)."""
    reference = torch.zeros(400, 500, dtype=dtype)
    noise = CsprngNoise().gaussian(SIGMA * C, reference)
    assert noise.shape == reference.shape and noise.dtype == dtype
    _check_gaussian(noise, SIGMA * C)


def test_one_csprng_draw_serves_a_steps_tensors_of_any_shape_and_dtype() -> None:
    references = [torch.zeros(3, 4), torch.zeros(0), torch.zeros(7, dtype=torch.float64),
                  torch.zeros(2, 2, 2)]
    noise = CsprngNoise().gaussians(2.0, references)
    assert [(n.shape, n.dtype) for n in noise] == [(r.shape, r.dtype) for r in references]
    flat = torch.cat([n.double().flatten() for n in noise])
    assert len(flat.unique()) == len(flat) == 27  # no slice reused
    assert [n.shape for n in TorchNoise().gaussians(1.0, references)] == [r.shape
                                                                          for r in references]


def test_torch_noise_has_mean_zero_and_std_sigma_c() -> None:
    _check_gaussian(TorchNoise().gaussian(SIGMA * C, torch.zeros(N)), SIGMA * C)


def test_csprng_noise_spans_chunks_and_zero_std_draws_nothing(monkeypatch) -> None:
    monkeypatch.setattr("client.privacy.noise.CHUNK", 1000)
    noise = CsprngNoise().gaussian(2.0, torch.zeros(3, 1001))  # 4 chunks, the last of 3 draws
    assert noise.shape == (3, 1001) and bool((noise != 0).all())
    assert float(noise[:, :1000].std()) > 1.5 and float(noise[-1].std()) > 1.5
    source = CsprngNoise()
    source.words = None  # any draw would fail
    assert torch.equal(source.gaussian(0.0, torch.ones(5)), torch.zeros(5))
    assert source.gaussians(1.0, [torch.ones(0)])[0].shape == (0,)


def test_csprng_rekeys_before_its_budget_runs_out(monkeypatch) -> None:
    monkeypatch.setattr("client.privacy.noise.REKEY_BYTES", 8 * 100)
    source = CsprngNoise()
    first = source._keystream
    source.words(100)
    assert source._keystream is first
    source.words(1)
    assert source._keystream is not first


@pytest.mark.parametrize("source", [CsprngNoise(), TorchNoise()], ids=lambda s: s.name)
def test_poisson_batch_sizes_are_binomial(source: NoiseSource) -> None:
    n, q, batches = 1000, 0.05, 4000
    sizes = torch.tensor([len(source.poisson(n, q)) for _ in range(batches)], dtype=torch.float64)
    mean, variance = n * q, n * q * (1 - q)
    assert abs(float(sizes.mean()) - mean) < 5 * math.sqrt(variance / batches)
    # the sample variance of near-normal counts has standard error ≈ variance·√(2/(k-1))
    assert abs(float(sizes.var()) - variance) < 5 * variance * math.sqrt(2 / (batches - 1))
    batch = source.poisson(n, q)
    assert batch.dtype == torch.long and bool((batch.diff() > 0).all())
    assert len(source.poisson(n, 1.0)) == n


def test_csprng_draws_do_not_follow_torch_seeds() -> None:
    draws = []
    for _ in range(2):
        torch.manual_seed(0)
        draws.append(CsprngNoise().gaussian(1.0, torch.zeros(64)))
    assert not torch.equal(*draws)


def test_a_noise_seed_replays_and_os_seeds_do_not() -> None:
    a, b = TorchNoise(seed=3), TorchNoise(seed=3)
    assert torch.equal(a.poisson(100, 0.3), b.poisson(100, 0.3))
    assert torch.equal(a.gaussian(1.0, torch.zeros(10)), b.gaussian(1.0, torch.zeros(10)))
    assert not torch.equal(TorchNoise().uniform(10), TorchNoise().uniform(10))


def test_resolve_noise_defaults_to_the_csprng() -> None:
    assert resolve_noise(None, None).name == "csprng"
    assert resolve_noise(None, 5).name == SEEDED
    fast = TorchNoise()
    assert resolve_noise(fast, None) is fast
    with pytest.raises(ValueError, match="expected at most one of them"):
        resolve_noise(fast, 5)
    with pytest.raises(TypeError, match="`noise` is 'csprng'; expected a NoiseSource"):
        resolve_noise("csprng", None)
    with pytest.raises(TypeError, match="`noise_seed` is 1.5; expected an int"):
        TorchNoise(seed=1.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_csprng_noise_lands_on_the_parameters_device() -> None:
    reference = torch.zeros(N, device="cuda")
    noise = CsprngNoise().gaussian(SIGMA * C, reference)
    assert noise.device == reference.device
    _check_gaussian(noise.cpu(), SIGMA * C)
    assert TorchNoise(seed=1).gaussian(1.0, reference).device == reference.device
