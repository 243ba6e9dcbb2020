"""Steps of a benchmark workload of real shape: camera events as a telescope reads them out.

An event is a raw waveform of 1855 pixels x 40 samples in int16 ADC counts (148 KB), the size of
an LST camera readout; the analysis turns it into a few floats. The point is the shape of the
work, not the physics: a source of modest cost, then about 1 ms of numpy and Python per event that
shrinks 148 KB to about 8 KB, so that a design pays for moving the waveform once and for every step
boundary it adds.

- ``WaveformSource`` (producer): a shower image, a pulse per pixel and noise, from a seed.
- ``ExtractImage`` (stager, one step): what ``Calibrate``, ``Clean`` and ``Parametrize`` do in
  turn, through the very same methods, so that the one-step and the three-step chains give the
  same parameters.
- ``Calibrate`` (waveform -> image and peak times in p.e. and samples; the waveform is dropped),
  ``Clean`` (the pixels of the shower: tailcuts, then peak-time coherence, then the brightest
  island) and ``Parametrize`` (Hillas moments, timing, leakage, concentration, a ring fit and
  image statistics; the cleaned image rides along).
- ``EventSummary`` (consumer): counts events and checksums them, so that every design's output can
  be checked against the plain loop's.

Costs per event on the 2-core benchmark machine (a plain loop, one thread): the source 0.12 ms;
``ExtractImage`` 0.9-1.0 ms, being ``Calibrate`` 0.33-0.36, ``Clean`` 0.21-0.23 and ``Parametrize``
0.33-0.36 ms. Messages: 148 KB in (the waveform out of band), 15 KB after ``Calibrate``, 17 KB
after ``Clean``, 8 KB out.

The camera is a hexagonal grid of 1855 pixels 5 cm apart; units are metres on the camera plane,
samples (of 1 ns) in time, ADC counts for the raw data and photo-electrons (p.e.) after calibration.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from traitlets import Bool, Float, Int, Unicode

from pipeline.bench.steps import RESULTS
from pipeline.component import Component

#: Pixels of the camera and samples of each pixel's readout (an LST camera's).
N_PIXELS = 1855
N_SAMPLES = 40
#: Metres between the centres of two neighbouring pixels.
PIXEL_SPACING = 0.05
#: Axial-coordinate steps from a hexagonal pixel to its six neighbours.
_HEX_STEPS = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (1, -1), (-1, 1)])
#: Where each pixel's samples start in a flattened waveform.
_ROW_STARTS = np.arange(N_PIXELS) * N_SAMPLES
#: Rising and falling sigmas of the pulse a photo-electron makes, in samples.
PULSE_RISE, PULSE_FALL = 1.2, 2.5
#: Highest ADC count a pixel reads (a 12-bit digitiser): brighter samples saturate.
ADC_MAX = 4095
#: Where the shower's mean peak time may fall, in samples (a pulse stays inside the readout).
PEAK_RANGE = (14.0, 24.0)
#: The most peak time varies along a shower's axis, in samples per metre.
MAX_TIME_GRADIENT = 12.0
#: Ranges of the simulated showers (metres, p.e.): they stay mostly inside the camera.
MAX_OFFSET = 0.6
LENGTH_RANGE = (0.08, 0.25)
WIDTH_RANGE = (0.03, 0.08)
INTENSITY_RANGE = (80.0, 8000.0)
#: Pixels where a shower puts fewer p.e. than this on average get none (most of the camera).
MIN_MEAN_PE = 0.05
#: Telescopes the events come from (ids 1 to N_TELESCOPES).
N_TELESCOPES = 4
#: The readout noise repeats after this many waveforms' worth of samples (a bank drawn once).
NOISE_BANK_EVENTS = 4
#: The increment (stream) of every event's PCG64 generator: any odd number; each event sets its own state.
PCG_INCREMENT = 0xDA3E39CB94B95BDB


@dataclass(frozen=True, eq=False)
class Camera:
    """Pixel centres (metres), each pixel's neighbours and which pixels make the camera's edge."""

    pix_x: np.ndarray
    pix_y: np.ndarray
    neighbors: np.ndarray  # (N_PIXELS, 6) indices; N_PIXELS pads a missing neighbour
    border: np.ndarray  # boolean: the outermost ring (pixels with fewer than six neighbours)
    border2: np.ndarray  # boolean: the two outermost rings


@functools.cache
def camera() -> Camera:
    """The N_PIXELS hexagonal pixels nearest the camera's centre (built once per process, read-only)."""
    rings = 26  # 2,107 pixels: enough to take the nearest N_PIXELS from
    q, r = np.mgrid[-rings:rings + 1, -rings:rings + 1]
    inside = np.abs(q + r) <= rings
    q, r = q[inside], r[inside]
    x, y = q + r / 2, r * math.sqrt(3) / 2
    order = np.lexsort((np.arctan2(y, x), np.round(np.hypot(x, y), 6)))[:N_PIXELS]
    q, r = q[order], r[order]
    offset = rings + 1  # a one-cell margin: the lookup needs no bounds checks
    index = np.full((2 * offset + 1, 2 * offset + 1), N_PIXELS)
    index[q + offset, r + offset] = np.arange(N_PIXELS)
    neighbors = index[q[:, None] + offset + _HEX_STEPS[:, 0], r[:, None] + offset + _HEX_STEPS[:, 1]]
    border = (neighbors == N_PIXELS).any(axis=1)
    border2 = border | np.append(border, False)[neighbors].any(axis=1)
    geometry = Camera(PIXEL_SPACING * x[order], PIXEL_SPACING * y[order], neighbors, border, border2)
    for array in (geometry.pix_x, geometry.pix_y, geometry.neighbors, geometry.border, geometry.border2):
        array.flags.writeable = False  # shared by every thread of the process
    return geometry


@functools.cache
def pulse_templates() -> np.ndarray:
    """(N_SAMPLES, N_SAMPLES) float32: row t is the pulse of one p.e. peaking at sample t, summing to 1
    over an unbounded readout (a pulse near an edge loses its tail)."""
    t = np.arange(N_SAMPLES)[None, :] - np.arange(N_SAMPLES)[:, None]
    shape = np.exp(-0.5 * (t / np.where(t < 0, PULSE_RISE, PULSE_FALL)) ** 2)
    templates = (shape / (math.sqrt(math.pi / 2) * (PULSE_RISE + PULSE_FALL))).astype(np.float32)
    templates.flags.writeable = False
    return templates


def window_fraction(width: int, shift: int) -> float:
    """The share of a pulse's charge that a window of ``width`` samples starting ``shift`` before its
    peak integrates (the calibration divides by it)."""
    peak = N_SAMPLES // 2
    return float(pulse_templates()[peak, peak - shift:peak - shift + width].sum())


def pixel_gains(mean_gain: float, spread: float, seed: int) -> np.ndarray:
    """Per-pixel gains (ADC counts per p.e.), log-normal around ``mean_gain``."""
    gains = mean_gain * np.exp(spread * np.random.default_rng(seed).standard_normal(N_PIXELS))
    return gains.astype(np.float32)


class CameraReadout(Component):
    """The camera's readout, shared by the source and the calibration: set it once for both."""

    pedestal = Float(400.0, help="Mean ADC counts a pixel reads with no light.").tag(config=True)
    mean_gain = Float(8.0, min=0.01, help="Mean pixel gain, in ADC counts per p.e.").tag(config=True)
    gain_spread = Float(0.1, min=0.0, help="Sigma of the natural logarithm of the pixel gains.").tag(config=True)
    gain_seed = Int(1, help="Seed of the pixel gains: the source and the calibration must agree.").tag(config=True)

    def gains(self) -> np.ndarray:
        """The gain of each pixel, in ADC counts per p.e."""
        return pixel_gains(self.mean_gain, self.gain_spread, self.gain_seed)


class WaveformSource(CameraReadout):
    """Producer: ``n_events`` events ``{"event_id", "tel_id", "waveform"}``, the waveform an int16 array of
    N_PIXELS x N_SAMPLES ADC counts (148 KB): one elliptical shower whose pulses arrive along a time
    gradient, over pedestals and noise. The same ``seed`` gives the same events.

    Its own cost is modest (about 0.1 ms an event): the pulse shapes and a bank of noise are made once,
    then each event draws its shower, its photon counts and where in the bank its noise starts, from a
    generator of its own seeded with ``(seed, event_id)``: it is ``shardable``, shard k of n making every
    n-th event, each the same as in one run of all of them.
    """

    shardable = True

    n_events = Int(1000, min=0, help="How many events.").tag(config=True)
    seed = Int(0, help="Seed of the showers, the photon counts and the noise.").tag(config=True)
    noise_adc = Float(5.0, min=0.0, help="RMS of the noise of each sample (readout and night-sky light), in ADC "
                      "counts.").tag(config=True)

    def __length_hint__(self) -> int:
        """How many events it yields (the progress display's total)."""
        return self.n_events

    def run(self) -> Iterator[dict[str, Any]]:
        """Yield each event; every waveform is a new array (a message may outlive the next yield)."""
        bank = np.random.default_rng(self.seed)
        geometry, templates = camera(), pulse_templates()
        gains = self.gains()
        size = N_PIXELS * N_SAMPLES
        noise = np.rint(bank.normal(0.0, self.noise_adc, NOISE_BANK_EVENTS * size)).astype(np.int16)
        pedestals = np.rint(self.pedestal + 2.0 * bank.standard_normal(N_PIXELS)).astype(np.int16)[:, None]
        rng = np.random.Generator(np.random.PCG64())
        for event_id in range(self.shard, self.n_events, self.n_shards):
            rng.bit_generator.state = event_state(self.seed, event_id)
            tel_id = int(rng.integers(1, N_TELESCOPES + 1))
            start = int(rng.integers(0, (NOISE_BANK_EVENTS - 1) * size))
            waveform = noise[start:start + size].reshape(N_PIXELS, N_SAMPLES) + pedestals
            mean = shower_image(geometry, rng)
            lit = np.flatnonzero(mean > MIN_MEAN_PE)
            charge = rng.poisson(mean[lit]).astype(np.float32) * gains[lit]
            peaks = np.clip(np.rint(self._peak_times(geometry, rng, lit)).astype(np.intp), 0, N_SAMPLES - 1)
            pulses = np.rint(charge[:, None] * templates[peaks])
            waveform[lit] = np.minimum(waveform[lit] + pulses, ADC_MAX)
            yield {"event_id": event_id, "tel_id": tel_id, "waveform": waveform}

    @staticmethod
    def _peak_times(geometry: Camera, rng: np.random.Generator, pixels: np.ndarray) -> np.ndarray:
        """The pulse peak time (samples) of ``pixels``: the shower's mean time plus a gradient across the camera."""
        direction = rng.uniform(-math.pi, math.pi)
        along = geometry.pix_x[pixels] * math.cos(direction) + geometry.pix_y[pixels] * math.sin(direction)
        return rng.uniform(*PEAK_RANGE) + rng.uniform(-MAX_TIME_GRADIENT, MAX_TIME_GRADIENT) * along


def event_state(seed: int, event_id: int) -> dict[str, Any]:
    """The PCG64 state an event's draws start from: made of ``seed`` and ``event_id`` alone, so that an event is
    the same whichever shard makes it (setting a state costs 1 us, seeding a new generator 10)."""
    mixed = int.from_bytes(hashlib.blake2b(b"%d:%d" % (seed, event_id), digest_size=16).digest(), "little")
    return {"bit_generator": "PCG64", "state": {"state": mixed, "inc": PCG_INCREMENT}, "has_uint32": 0,
            "uinteger": 0}


def shower_image(geometry: Camera, rng: np.random.Generator) -> np.ndarray:
    """The mean p.e. per pixel of a random elliptical 2D-Gaussian shower (log-uniform intensity)."""
    offset, direction = MAX_OFFSET * math.sqrt(rng.random()), rng.uniform(-math.pi, math.pi)
    cx, cy = offset * math.cos(direction), offset * math.sin(direction)
    length = rng.uniform(*LENGTH_RANGE)
    width = rng.uniform(WIDTH_RANGE[0], min(WIDTH_RANGE[1], length))
    psi = rng.uniform(-math.pi / 2, math.pi / 2)
    intensity = math.exp(rng.uniform(*np.log(INTENSITY_RANGE)))
    dx, dy = geometry.pix_x - cx, geometry.pix_y - cy
    cos, sin = math.cos(psi), math.sin(psi)
    along, across = (dx * cos + dy * sin) / length, (dy * cos - dx * sin) / width
    pixel_area = math.sqrt(3) / 2 * PIXEL_SPACING**2
    return intensity * pixel_area / (2 * math.pi * length * width) * np.exp(-0.5 * (along**2 + across**2))


# -- the analysis: three functions of the event, each one step ------------------------------------

def calibrate(waveform: np.ndarray, gains: np.ndarray, pedestal_samples: int, width: int,
              shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's charge (p.e.) and pulse peak time (samples), as float32 arrays.

    The pedestal is the mean of the first ``pedestal_samples``; the pulse is the pixel's highest sample;
    the charge is the sum of ``width`` samples from ``shift`` before it, corrected for the share of a
    pulse outside the window; the peak time is the mean time in that window, weighted by the signal.
    """
    signal = waveform.astype(np.float32)
    signal -= signal[:, :pedestal_samples].sum(axis=1, keepdims=True) / np.float32(pedestal_samples)
    start = np.clip(signal.argmax(axis=1) - shift, 0, N_SAMPLES - width)
    window = signal.ravel()[(_ROW_STARTS + start)[:, None] + np.arange(width)]
    charge = window.sum(axis=1)
    weights = np.maximum(window, np.float32(0.0))
    total = weights.sum(axis=1)
    times = start + (weights @ np.arange(width, dtype=np.float32)) / np.where(total > 0, total, np.float32(1.0))
    image = charge / (gains * np.float32(window_fraction(width, shift)))
    return image.astype(np.float32), times.astype(np.float32)


def clean(image: np.ndarray, times: np.ndarray, picture: float, boundary: float, min_neighbors: int,
          time_limit: float) -> tuple[np.ndarray, int]:
    """The pixels of the shower (a boolean mask), and how many islands the cleaning found before it kept
    the brightest.

    Tailcuts (a picture pixel has at least ``picture`` p.e. and ``min_neighbors`` neighbours of at least
    ``boundary`` p.e.; a boundary pixel has at least ``boundary`` p.e. and a picture neighbour); then a
    pixel goes whose peak time is more than ``time_limit`` samples from the mean of its kept
    neighbours', or that has no kept neighbour; then only the island (connected pixels) of the largest
    charge stays.
    """
    neighbors = camera().neighbors
    above_boundary = image >= boundary
    picture_pixels = (image >= picture) & (_count(above_boundary, neighbors) >= min_neighbors)
    kept = np.flatnonzero(picture_pixels | (above_boundary & (_count(picture_pixels, neighbors) > 0)))
    links = _links(kept, neighbors)
    linked = links < kept.size
    kept_times = times[kept]
    count = linked.sum(axis=1)
    mean_time = (np.append(kept_times, 0.0)[links] * linked).sum(axis=1) / np.maximum(count, 1)
    kept = kept[(count > 0) & (np.abs(kept_times - mean_time) <= time_limit)]
    mask = np.zeros(N_PIXELS, dtype=bool)
    if not kept.size:
        return mask, 0
    labels = _islands(_links(kept, neighbors))
    charges = np.bincount(labels, weights=image[kept])
    mask[kept[labels == charges.argmax()]] = True
    return mask, int(np.count_nonzero(np.bincount(labels)))


def _count(selected: np.ndarray, neighbors: np.ndarray) -> np.ndarray:
    """For each pixel, how many of its neighbours are True in ``selected``."""
    return np.append(selected, False)[neighbors].sum(axis=1)


def _links(pixels: np.ndarray, neighbors: np.ndarray) -> np.ndarray:
    """(len(pixels), 6): the position in ``pixels`` of each one's neighbours, len(pixels) for a neighbour
    that is not among them."""
    position = np.full(N_PIXELS + 1, pixels.size)
    position[pixels] = np.arange(pixels.size)
    return position[neighbors[pixels]]


def _islands(links: np.ndarray) -> np.ndarray:
    """Each pixel's island, given its ``links``: the smallest position it connects to. Labels spread
    one neighbour a round until none changes."""
    size = len(links)
    labels = np.arange(size + 1)  # the last one pads a missing neighbour: no smaller label comes from it
    while True:
        spread = np.minimum(labels[:size], labels[links].min(axis=1))
        if np.array_equal(spread, labels[:size]):
            return spread
        labels[:size] = spread


#: The names of the parameters ``parametrize`` returns, in order.
PARAMETERS = ("intensity", "n_pixels", "x", "y", "r", "phi", "length", "width", "psi", "skewness", "kurtosis",
              "time_slope", "time_intercept", "time_deviation", "leakage1", "leakage2", "concentration_pixel",
              "concentration_cog", "concentration_core", "peak_max", "peak_mean", "peak_std", "ring_x", "ring_y",
              "ring_radius", "ring_deviation", "image_mean", "image_std", "image_skewness", "image_kurtosis")


def parametrize(image: np.ndarray, times: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The shower's parameters from the pixels of ``mask`` (PARAMETERS; NaN where one needs more pixels).

    Hillas moments: ``intensity`` (p.e.), the centre ``x``/``y`` (metres) or ``r``/``phi``, ``length``
    and ``width``, the axis angle ``psi``, and the ``skewness`` and ``kurtosis`` along it. Timing: a line
    fit of peak time against the position along the axis (``time_slope`` in samples per metre,
    ``time_intercept``, ``time_deviation`` the weighted RMS of the residuals). Leakage: the share of the
    intensity in the camera's outermost ring of pixels and in its two outermost. Concentration: the
    share in the brightest pixel, in the pixels within a pixel spacing of the centre, and inside the
    Hillas ellipse. Then the brightest pixel and the mean and spread of the pixels' charges; the circle
    that fits the pixels best, weighted by charge (a muon's ring: ``ring_x``, ``ring_y``, ``ring_radius``
    and the RMS distance of the pixels from it, ``ring_deviation``); and the mean, spread, skewness and
    kurtosis of the whole camera's image (the uncleaned charges: night-sky light, stars, a flasher).
    """
    geometry = camera()
    weights = image[mask].astype(np.float64)
    intensity = float(weights.sum())
    values = dict.fromkeys(PARAMETERS, float("nan"))
    values.update(intensity=intensity, n_pixels=float(weights.size), **_statistics(image))
    if weights.size < 3 or not intensity > 0:
        return values
    x, y = geometry.pix_x[mask], geometry.pix_y[mask]
    cx, cy = float(weights @ x) / intensity, float(weights @ y) / intensity
    dx, dy = x - cx, y - cy
    sxx, syy, sxy = (float(weights @ (a * b)) / intensity for a, b in ((dx, dx), (dy, dy), (dx, dy)))
    variances, axes = np.linalg.eigh(np.array([[sxx, sxy], [sxy, syy]]))  # ascending: the major axis last
    psi = (math.atan2(axes[1, 1], axes[0, 1]) + math.pi / 2) % math.pi - math.pi / 2
    width, length = (float(v) for v in np.sqrt(np.clip(variances, 0.0, None)))
    along = dx * math.cos(psi) + dy * math.sin(psi)
    across = dy * math.cos(psi) - dx * math.sin(psi)
    values.update(x=cx, y=cy, r=math.hypot(cx, cy), phi=math.atan2(cy, cx), length=length, width=width, psi=psi)
    if length > 0:
        values.update(skewness=float(weights @ along**3) / intensity / length**3,
                      kurtosis=float(weights @ along**4) / intensity / length**4)
    t = times[mask].astype(np.float64)
    mean_along, mean_t = float(weights @ along) / intensity, float(weights @ t) / intensity
    spread = float(weights @ (along - mean_along) ** 2)
    if spread > 0:
        slope = float(weights @ ((along - mean_along) * (t - mean_t))) / spread
        intercept = mean_t - slope * mean_along
        residuals = t - (intercept + slope * along)
        values.update(time_slope=slope, time_intercept=intercept,
                      time_deviation=math.sqrt(float(weights @ residuals**2) / intensity))
    values.update(
        leakage1=float(weights[geometry.border[mask]].sum()) / intensity,
        leakage2=float(weights[geometry.border2[mask]].sum()) / intensity,
        concentration_pixel=float(weights.max()) / intensity,
        concentration_cog=float(weights[np.hypot(dx, dy) <= PIXEL_SPACING].sum()) / intensity,
        concentration_core=(float(weights[(along / length) ** 2 + (across / width) ** 2 <= 1].sum()) / intensity
                            if width > 0 else float("nan")),
        peak_max=float(weights.max()), peak_mean=float(weights.mean()), peak_std=float(weights.std()),
    )
    values.update(_ring(x, y, weights))
    return values


def _statistics(image: np.ndarray) -> dict[str, float]:
    """The mean, standard deviation, skewness and kurtosis of every pixel's charge."""
    values = image.astype(np.float64)
    mean = float(values.mean())
    deviations = values - mean
    variance = float(deviations @ deviations) / values.size
    std = math.sqrt(variance)
    if not std > 0:
        return {"image_mean": mean, "image_std": std}
    cubes = deviations**3
    return {"image_mean": mean, "image_std": std, "image_skewness": float(cubes.mean()) / std**3,
            "image_kurtosis": float(cubes @ deviations) / values.size / variance**2}


def _ring(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """The circle through the points (x, y) that best fits them, weighted (Kasa's algebraic fit: the
    least squares of x² + y² + a x + b y + c); {} when the points are on a line."""
    design = np.column_stack((x, y, np.ones_like(x))) * weights[:, None]
    target = -(x * x + y * y) * weights
    (a, b, c), _, rank, _ = np.linalg.lstsq(design, target, rcond=None)
    radius_squared = (a * a + b * b) / 4 - c
    if rank < 3 or not radius_squared > 0:
        return {}
    cx, cy, radius = -a / 2, -b / 2, math.sqrt(radius_squared)
    distances = np.hypot(x - cx, y - cy) - radius
    deviation = math.sqrt(float(weights @ distances**2) / float(weights.sum()))
    return {"ring_x": float(cx), "ring_y": float(cy), "ring_radius": radius, "ring_deviation": deviation}


# -- the steps ---------------------------------------------------------------------------------

class Calibration(CameraReadout):
    """Options of the calibration, and the calibration of one event (``Calibrate``, ``ExtractImage``)."""

    pedestal_samples = Int(8, min=1, max=N_SAMPLES, help="Leading samples whose mean is a pixel's pedestal.").tag(
        config=True)
    window_width = Int(7, min=1, max=N_SAMPLES, help="Samples summed into a pixel's charge.").tag(config=True)
    window_shift = Int(3, min=0, help="Samples the charge window starts before the pulse's peak.").tag(config=True)

    def init(self) -> None:
        """Compute the pixel gains."""
        super().init()
        self._gains = self.gains()

    def calibrated(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event without its waveform: ``image`` (p.e.) and ``peak_time`` (samples) per pixel."""
        image, times = calibrate(event["waveform"], self._gains, self.pedestal_samples, self.window_width,
                                 self.window_shift)
        return {"event_id": event["event_id"], "tel_id": event["tel_id"], "image": image, "peak_time": times}


class Cleaning(Component):
    """Options of the cleaning, and the cleaning of one calibrated event (``Clean``, ``ExtractImage``)."""

    picture_threshold = Float(8.0, help="p.e. a picture (core) pixel needs.").tag(config=True)
    boundary_threshold = Float(4.0, help="p.e. a boundary pixel, next to a picture pixel, needs.").tag(config=True)
    min_neighbors = Int(2, min=0, help="Neighbours above the boundary threshold a picture pixel needs.").tag(
        config=True)
    time_limit = Float(2.5, min=0.0, help="Samples a kept pixel's peak time may differ from its kept "
                       "neighbours' mean.").tag(config=True)

    def cleaned(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event with ``mask`` (the shower's pixels) and ``n_islands`` added."""
        mask, islands = clean(event["image"], event["peak_time"], self.picture_threshold, self.boundary_threshold,
                              self.min_neighbors, self.time_limit)
        return {**event, "mask": mask, "n_islands": islands}


class Parametrization(Component):
    """Options of the parametrisation, and the parametrisation of one cleaned event (``Parametrize``,
    ``ExtractImage``)."""

    keep_image = Bool(True, help="Keep the cleaned image (float32 p.e., zero outside the shower) in the output.").tag(
        config=True)

    def parametrized(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event's parameters (and its cleaned image); its other pixel arrays are dropped."""
        mask = event["mask"]
        output = {"event_id": event["event_id"], "tel_id": event["tel_id"], "n_islands": event["n_islands"],
                  **parametrize(event["image"], event["peak_time"], mask)}
        if self.keep_image:
            output["image"] = np.where(mask, event["image"], np.float32(0.0))
        return output


class Calibrate(Calibration):
    """Stager: waveform -> ``image`` (p.e.) and ``peak_time`` per pixel; the waveform is not sent on."""

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        """Calibrate one event."""
        return self.calibrated(event)


class Clean(Cleaning):
    """Stager: adds the ``mask`` of the shower's pixels and the ``n_islands`` the cleaning found."""

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        """Clean one event."""
        return self.cleaned(event)


class Parametrize(Parametrization):
    """Stager: the shower's parameters (and, by default, its cleaned image) in place of the pixel arrays."""

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        """Parametrise one event."""
        return self.parametrized(event)


class ExtractImage(Calibration, Cleaning, Parametrization):
    """Stager: ``Calibrate``, ``Clean`` and ``Parametrize`` in one step (the same code, so the same output):
    a 148 KB waveform in, a dict of parameters and the 7 KB cleaned image out (8 KB pickled)."""

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        """Calibrate, clean and parametrise one event."""
        return self.parametrized(self.cleaned(self.calibrated(event)))


class EventSummary(Component):
    """Consumer: counts the parametrised events, sums their ids and their intensities rounded to whole
    p.e.; publishes ``(count, id_sum, size_sum)`` in ``RESULTS[tag]`` at finish. Orderless, so every
    design's output checks against the plain loop's."""

    tag = Unicode("", help="Run tag: where the summary goes in RESULTS.").tag(config=True)

    def init(self) -> None:
        """Start at zero."""
        self.count = 0
        self.id_sum = 0
        self.size_sum = 0

    def run(self, event: dict[str, Any]) -> None:
        """Count one event."""
        self.count += 1
        self.id_sum += event["event_id"]
        self.size_sum += round(event["intensity"])

    def finish(self) -> None:
        """Publish the summary."""
        RESULTS[self.tag].append((self.count, self.id_sum, self.size_sum))


#: The steps of an analysis, by the names of a chain of steps: one step, or the same work in three.
ANALYSES = {"one step": ("ExtractImage",), "three steps": ("Calibrate", "Clean", "Parametrize")}

#: Per process, the stage objects of ``analyse`` (a pool's process makes and init()s them once).
_MADE: dict[tuple[str, ...], list[Component]] = {}


def analyse(names: tuple[str, ...], event: dict[str, Any]) -> dict[str, Any]:
    """Run the stages ``names`` (classes of this module) on ``event`` in turn: a process pool's work."""
    stages = _MADE.get(names)
    if stages is None:
        stages = _MADE[names] = [globals()[name]() for name in names]
        for stage in stages:
            stage.init()
    for stage in stages:
        event = stage.run(event)
    return event
