"""RawBoost (Tak et al., ICASSP 2022): data boosting on the raw wave for anti-spoofing.

Three distortions that a spoof detector should not take for evidence, each drawn afresh per clip:

1. linear and non-linear convolutive noise (a channel, a cheap microphone or amplifier): the sum
   over orders i = 1..`orders` of x**i, each filtered by its own random cascade of `bands` FIR
   notches. Orders above the first are attenuated by a bias of `min_bias_db`..`max_bias_db`, so
   the signal stays mostly linear with a little harmonic distortion on top;
2. impulsive signal-dependent additive noise (clipping, bad quantisation, packet loss): a random
   `min_percent`..`max_percent` % of the samples get x + g_sd * z * x, z a product of two uniform
   draws in [-1, 1] (so small changes are frequent and large ones rare);
3. stationary signal-independent additive noise (a noisy line): white noise coloured by a notch
   cascade of the same kind, added at a random SNR (`min_snr_db`..`max_snr_db`) over the clip.

`algo` names what runs: "1", "2", "3"; "+" chains them in series in the order written ("1+2+3",
"1+2", "1+3", "2+3"); "|" runs branches in parallel on the same input and averages them ("1|2").
The release's numbers 4-8 are accepted too (4 = 1+2+3, 5 = 1+2, 6 = 1+3, 7 = 2+3, 8 = 1|2). The
paper's best: series 1+2 on ASVspoof 2021 LA, 3 alone on DF.

Levels follow the authors' release: (1) removes the DC that even powers bring and, like (2),
divides by the peak only when the peak exceeds 1 (a clip that fits is never made louder); (3)
scales the noise by the clip's L2 energy, so the SNR is exact and the clip itself is untouched.
Silence stays silence (no division by a zero peak or energy). Every draw comes from the caller's
generator, so a seed gives the same wave on any worker.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import signal

from antispoof.data.audio import SR

RELEASE_ALGOS = {"4": "1+2+3", "5": "1+2", "6": "1+3", "7": "2+3", "8": "1|2"}


def parse_algo(algo) -> tuple[tuple[int, ...], ...]:
    """"1+2|3" -> ((1, 2), (3,)): parallel branches, each a series of distortions 1-3."""
    text = str(algo).replace(" ", "")
    text = RELEASE_ALGOS.get(text, text)
    try:
        branches = tuple(tuple(int(step) for step in branch.split("+")) for branch in text.split("|"))
    except ValueError:
        branches = ()
    if not branches or any(step not in (1, 2, 3) for branch in branches for step in branch):
        raise ValueError(f"unknown RawBoost algo {algo!r}: write distortions 1, 2, 3 joined by + (series) "
                         "or | (parallel), e.g. '1+2', '3', '1|2', or a release number 4-8")
    return branches


def peak_tame(y: np.ndarray) -> np.ndarray:
    """Divide by the peak only when it exceeds 1 (the release's normWav(y, 0)); silence passes."""
    peak = float(np.abs(y).max(initial=0.0))
    return y / peak if peak > 1.0 else y


def fir(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Linear-phase FIR filtering (overlap-add) with its delay removed: b has odd length, so
    'same' keeps the output aligned sample for sample with x (the 10 ms labels stay exact)."""
    return signal.oaconvolve(x, b, mode="same")


@dataclass(frozen=True)
class Notches:
    """Ranges of a random cascade of band-stop filters (the release's genNotchCoeffs)."""

    bands: int = 5
    min_centre_hz: float = 20.0
    max_centre_hz: float = 8000.0
    min_bw_hz: float = 100.0
    max_bw_hz: float = 1000.0
    min_coeffs: int = 10
    max_coeffs: int = 100
    min_gain_db: float = 0.0
    max_gain_db: float = 0.0
    sr: int = SR

    def draw(self, rng: np.random.Generator, gain_shift=(0.0, 0.0)) -> np.ndarray:
        """FIR taps: `bands` notches convolved (in cascade), then scaled so the peak of the
        magnitude response is the drawn gain (0 dB: nothing is amplified). Tap counts are made odd
        so each notch is linear-phase with a whole-sample delay. `gain_shift` = (min_bias, max_bias)
        dB, the non-linear orders' bias: the gain is then drawn in min_gain - max_bias ..
        max_gain - min_bias (the release's pairing gives the same range at its 0 dB defaults)."""
        b = np.ones(1)
        for _ in range(self.bands):
            centre = rng.uniform(self.min_centre_hz, self.max_centre_hz)
            width = rng.uniform(self.min_bw_hz, self.max_bw_hz)
            taps = int(rng.integers(self.min_coeffs, self.max_coeffs + 1)) | 1
            lo, hi = max(centre - width / 2, 1e-3), min(centre + width / 2, self.sr / 2 - 1e-3)
            b = np.convolve(b, signal.firwin(taps, [lo, hi], window="hamming", fs=self.sr))
        gain = rng.uniform(self.min_gain_db - gain_shift[1], self.max_gain_db - gain_shift[0])
        return 10 ** (gain / 20) * b / np.abs(np.fft.rfft(b, 8192)).max()


def convolutive_noise(x: np.ndarray, rng: np.random.Generator, notches: Notches = Notches(), *,
                      orders: int = 5, min_bias_db: float = 5.0, max_bias_db: float = 20.0) -> np.ndarray:
    """Distortion 1: sum_i fir(x**i, b_i), i = 1..orders; order i > 1 gets gains lowered by
    min_bias_db..max_bias_db (with the default 0 dB gain: -20..-5 dB). DC removed, peak tamed."""
    y = np.zeros(len(x))
    for order in range(1, orders + 1):
        shift = (min_bias_db, max_bias_db) if order > 1 else (0.0, 0.0)
        y += fir(x ** order, notches.draw(rng, shift))
    return peak_tame(y - y.mean())


def impulsive_noise(x: np.ndarray, rng: np.random.Generator, *, min_percent: float = 0.0,
                    max_percent: float = 10.0, g_sd: float = 2.0) -> np.ndarray:
    """Distortion 2: a random min_percent..max_percent % of the samples (drawn without
    replacement) become x + g_sd * z * x, z = u1 * u2 with u uniform in [-1, 1]. Peak tamed."""
    n = int(len(x) * rng.uniform(min_percent, max_percent) / 100)
    where = rng.permutation(len(x))[:n]
    z = rng.uniform(-1, 1, n) * rng.uniform(-1, 1, n)
    y = np.array(x, np.float64)
    y[where] += g_sd * z * y[where]
    return peak_tame(y)


def stationary_noise(x: np.ndarray, rng: np.random.Generator, notches: Notches = Notches(), *,
                     min_snr_db: float = 10.0, max_snr_db: float = 40.0) -> np.ndarray:
    """Distortion 3: Gaussian white noise through a random notch cascade, scaled so that
    ||x|| / ||noise|| is the drawn SNR, then added. A silent clip gets no noise (SNR undefined)."""
    noise = fir(rng.standard_normal(len(x)), notches.draw(rng))
    snr_db = rng.uniform(min_snr_db, max_snr_db)
    energy = float(np.linalg.norm(noise))
    if energy == 0.0:
        return np.array(x, np.float64)
    return x + noise * (float(np.linalg.norm(x)) / energy) * 10 ** (-snr_db / 20)


@dataclass(frozen=True)
class RawBoost:
    """The configured augmentation: RawBoost(algo="1+2", ...)(wave, rng) -> wave, same length.

    Every knob is a keyword with the release's default (`augment.wave.rawboost` in the configs
    has the same names); the notch ranges serve both (1) and (3), as in the release.
    """

    algo: str = "1+2"
    orders: int = 5
    bands: int = 5
    min_centre_hz: float = 20.0
    max_centre_hz: float = 8000.0
    min_bw_hz: float = 100.0
    max_bw_hz: float = 1000.0
    min_coeffs: int = 10
    max_coeffs: int = 100
    min_gain_db: float = 0.0
    max_gain_db: float = 0.0
    min_bias_db: float = 5.0
    max_bias_db: float = 20.0
    min_percent: float = 0.0
    max_percent: float = 10.0
    g_sd: float = 2.0
    min_snr_db: float = 10.0
    max_snr_db: float = 40.0
    sr: int = SR

    def __post_init__(self):
        """Fail at construction (in one line) rather than mid-epoch in a worker."""
        parse_algo(self.algo)
        for name in ("centre_hz", "bw_hz", "coeffs", "gain_db", "bias_db", "percent", "snr_db"):
            if getattr(self, f"min_{name}") > getattr(self, f"max_{name}"):
                raise ValueError(f"RawBoost: min_{name} is above max_{name}")
        if self.orders < 1 or self.bands < 0 or self.min_coeffs < 1 or self.min_bw_hz <= 0 \
                or not 0 <= self.min_centre_hz <= self.max_centre_hz <= self.sr / 2 \
                or not 0 <= self.min_percent <= self.max_percent <= 100:
            raise ValueError("RawBoost: needs orders >= 1, bands >= 0, min_coeffs >= 1, min_bw_hz > 0, "
                             "centres in 0..sr/2 and percents in 0..100")

    @property
    def notches(self) -> Notches:
        names = {f.name for f in fields(Notches)}
        return Notches(**{name: getattr(self, name) for name in names})

    def distort(self, step: int, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One distortion (1, 2 or 3) on a float64 wave."""
        if step == 1:
            return convolutive_noise(x, rng, self.notches, orders=self.orders,
                                     min_bias_db=self.min_bias_db, max_bias_db=self.max_bias_db)
        if step == 2:
            return impulsive_noise(x, rng, min_percent=self.min_percent, max_percent=self.max_percent,
                                   g_sd=self.g_sd)
        return stationary_noise(x, rng, self.notches, min_snr_db=self.min_snr_db, max_snr_db=self.max_snr_db)

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """float32 wave -> float32 wave of the same length. Parallel branches are averaged (the
        release sums them; the mean keeps the clip's level) and the peak is tamed."""
        x = np.asarray(wave, np.float64)
        if x.size == 0:
            return np.asarray(wave, np.float32).copy()
        outputs = []
        for branch in parse_algo(self.algo):
            y = x
            for step in branch:
                y = self.distort(step, y, rng)
            outputs.append(y)
        y = outputs[0] if len(outputs) == 1 else peak_tame(np.mean(outputs, axis=0))
        return y.astype(np.float32)
