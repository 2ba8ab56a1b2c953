"""Where DP-SGD's randomness comes from: the Gaussian noise and the Poisson sampling.

DP-SGD's guarantee assumes that whoever sees the update cannot predict the noise or the batches:
whoever knows the noise subtracts it, and whoever knows the batches loses the amplification by
subsampling. torch's generators are Mersenne Twister, a statistical generator whose state can be
recovered from its outputs; seeding it from the operating system makes its start unpredictable
but not its stream. opacus's own remedy (`PrivacyEngine(secure_mode=True)`) needs `torchcsprng`,
which is not built for current torch. So the default source here is a cryptographic one:

- `CsprngNoise` (name `csprng`, a site's default): the ChaCha20 keystream of `cryptography`
  (OpenSSL), keyed with 32 bytes of `os.urandom` and re-keyed every `REKEY_BYTES`. Each 64-bit
  word becomes a uniform k·2⁻⁵³ with all 53 mantissa bits random; pairs of uniforms become two
  Gaussians by Box–Muller in float64. The noise on each coordinate is the sum of four such
  Gaussians divided by 2 (same std), which is opacus's `secure_mode` defence against
  floating-point attacks on the Gaussian mechanism (Holohan et al. 2021, arXiv:2107.10138 §5.1;
  opacus `optimizers/optimizer.py::_generate_noise`). A step's noise for all tensors is drawn
  at once on the CPU and copied to the parameters' device once (on 2 CPU cores: 0.8 ms for 2.5k
  values, 10 ms for MiniLM's 80k, bench/secure_noise.py; not yet timed on a GPU, where drawing
  on the device would save the copy). Poisson sampling compares 53-bit uniforms with the rate.
- `TorchNoise()` (name `os-seeded`): torch generators seeded from OS entropy, as before. Faster,
  not cryptographic: an explicit choice for experiments, never a silent default.
- `TorchNoise(seed=...)` (name `seeded (insecure, tests only)`): replays a round exactly.

`NoiseSource.name` is what a privacy ledger records as the source of a round's noise.
"""

from __future__ import annotations

import math
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

REKEY_BYTES = 1 << 30
"""Keystream bytes drawn under one ChaCha20 key before a fresh one (far below the 2³² 64-byte
blocks after which its 32-bit block counter would wrap)."""
CHUNK = 1 << 20
"""Noise coordinates drawn at a time (a full-model tensor would otherwise need 32 bytes of
float64 scratch per coordinate at once)."""
CSPRNG = "csprng"
OS_SEEDED = "os-seeded"
SEEDED = "seeded (insecure, tests only)"


class NoiseSource(ABC):
    """Gaussian noise for `DPOptimizer.add_noise` and uniforms for Poisson sampling."""

    name: str
    """What the privacy ledger records: `csprng`, `os-seeded` or `seeded (insecure, tests only)`."""
    secure: bool
    """True only for a cryptographic generator."""

    @abstractmethod
    def gaussian(self, std: float, reference: torch.Tensor) -> torch.Tensor:
        """Noise N(0, std²) of `reference`'s shape, dtype and device."""

    def gaussians(self, std: float, references: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """`gaussian` for each of `references` (one optimizer step's noise), in order."""
        return [self.gaussian(std, reference) for reference in references]

    @abstractmethod
    def uniform(self, n: int) -> torch.Tensor:
        """`n` independent uniforms in [0, 1), on the CPU."""

    def poisson(self, n: int, rate: float) -> torch.Tensor:
        """Indices 0..n-1 each kept independently with probability `rate`, ascending (LongTensor):
        one Poisson-sampled batch."""
        return (self.uniform(n) < rate).nonzero().reshape(-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class CsprngNoise(NoiseSource):
    """ChaCha20 keyed from `os.urandom`: cryptographically secure noise and sampling."""

    name = CSPRNG
    secure = True

    def __init__(self) -> None:
        self._rekey()

    def _rekey(self) -> None:
        # lazy: `cryptography` is a project dependency but only DP-SGD needs it
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

        # A fresh random key is never reused, so a fixed nonce (and counter 0) is safe.
        cipher = Cipher(algorithms.ChaCha20(os.urandom(32), bytes(16)), mode=None)
        self._keystream = cipher.encryptor()
        self._left = REKEY_BYTES

    def words(self, n: int) -> np.ndarray:
        """`n` uniformly random 64-bit words (uint64) from the keystream."""
        size = 8 * n
        if size > self._left:
            self._rekey()
        self._left -= size
        return np.frombuffer(self._keystream.update(bytes(size)), dtype="<u8")

    def uniform53(self, n: int) -> np.ndarray:
        """`n` uniforms k·2⁻⁵³, k uniform in 0..2⁵³-1 (float64: every mantissa bit random)."""
        return (self.words(n) >> np.uint64(11)).astype(np.float64) * 2.0**-53

    def standard_normal(self, n: int) -> torch.Tensor:
        """`n` N(0, 1) draws by Box–Muller in float64 (each uniform pair gives two; torch's
        vectorised log/cos/sin measured 2x faster than numpy's here). With 53-bit uniforms the
        radius is at most √(2·53·ln 2) ≈ 8.6: a tail of probability ~1e-17 is cut."""
        pairs = (n + 1) // 2
        u = torch.from_numpy(self.uniform53(2 * pairs))
        radius = torch.sqrt(-2.0 * torch.log1p(-u[:pairs]))  # 1 - u in (0, 1]: never log(0)
        angle = (2.0 * math.pi) * u[pairs:]
        return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)])[:n]

    def secure_normal(self, n: int) -> torch.Tensor:
        """`n` N(0, 1) draws, each (z1 + z2 + z3 + z4) / 2 of four Box–Muller draws (opacus's
        secure_mode), float64 on the CPU."""
        out = torch.empty(n, dtype=torch.float64)
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            out[start:start + m] = self.standard_normal(4 * m).view(4, m).sum(dim=0) / 2
        return out

    def gaussian(self, std: float, reference: torch.Tensor) -> torch.Tensor:
        return self.gaussians(std, [reference])[0]

    def gaussians(self, std: float, references: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One draw for all `references`, split: a step's many small tensors would otherwise
        each pay the fixed cost of a draw (measured ~0.2 ms each on 2 busy cores), and a GPU
        site one host-to-device copy per dtype and device instead of one per tensor."""
        sizes = [reference.numel() for reference in references]
        if std == 0 or sum(sizes) == 0:
            return [torch.zeros_like(reference) for reference in references]
        flat = self.secure_normal(sum(sizes)) * std
        moved: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
        out, start = [], 0
        for reference, size in zip(references, sizes):
            key = (reference.dtype, reference.device)
            if key not in moved:
                moved[key] = flat.to(dtype=reference.dtype).to(reference.device)
            out.append(moved[key][start:start + size].view(reference.shape))
            start += size
        return out

    def uniform(self, n: int) -> torch.Tensor:
        return torch.from_numpy(self.uniform53(n))


class TorchNoise(NoiseSource):
    """torch's Mersenne Twister generators: seeded from OS entropy, or from `seed` (tests).

    The sampler draws on the CPU; opacus-style noise is drawn on the parameters' device with a
    generator of that device (torch refuses a CPU generator for a CUDA draw). On a CPU site one
    generator serves both, so a seed replays a round exactly."""

    secure = False

    def __init__(self, seed: int | None = None) -> None:
        if seed is not None and not isinstance(seed, int):
            raise TypeError(f"`noise_seed` is {seed!r}; expected an int, or None")
        self.seed = seed
        self.name = OS_SEEDED if seed is None else SEEDED
        self.sampling = _generator(seed, torch.device("cpu"))
        self._noise: dict[torch.device, torch.Generator] = {torch.device("cpu"): self.sampling}

    def generator(self, device: torch.device) -> torch.Generator:
        """The noise generator for `device` (the sampling one on the CPU)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._noise:
            self._noise[device] = _generator(None if self.seed is None else self.seed + 1, device)
        return self._noise[device]

    def gaussian(self, std: float, reference: torch.Tensor) -> torch.Tensor:
        if std == 0:
            return torch.zeros_like(reference)
        return torch.normal(mean=0.0, std=std, size=reference.shape, device=reference.device,
                            dtype=reference.dtype, generator=self.generator(reference.device))

    def uniform(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.sampling)


def _generator(seed: int | None, device: torch.device) -> torch.Generator:
    seed = secrets.randbits(63) if seed is None else seed
    return torch.Generator(device=device).manual_seed(seed)


def resolve_noise(noise: NoiseSource | None, noise_seed: int | None) -> NoiseSource:
    """The source a DP round draws from: `noise` if given, a seeded torch source for
    `noise_seed` (tests and benchmarks), else a fresh `CsprngNoise` (a real site)."""
    if noise is not None and noise_seed is not None:
        raise ValueError(f"`noise` is {noise!r} and `noise_seed` is {noise_seed}; expected at "
                         "most one of them (`noise_seed` is short for noise=TorchNoise(seed=...))")
    if noise is not None:
        if not isinstance(noise, NoiseSource):
            raise TypeError(f"`noise` is {noise!r}; expected a NoiseSource (CsprngNoise() or "
                            "TorchNoise()) or None for the secure default")
        return noise
    return CsprngNoise() if noise_seed is None else TorchNoise(seed=noise_seed)
