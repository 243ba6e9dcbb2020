"""A toy Cherenkov-camera analysis: simulate, calibrate, clean, parametrise and route events.

Units: pixel coordinates and Hillas lengths in metres on the camera plane, angles in radians,
raw images in ADC counts, calibrated images in photo-electrons (p.e.). Every step uses the one
camera that ``hexagonal_camera()`` returns with its default arguments.

An event is a dict: ``event_id``, ``tel_id``, ``tel_type`` ("LST" or "MST"), ``image`` (one float
per pixel: ADC counts from the simulator, p.e. after ``Calibrate``), ``true`` (the simulated
shower, as ``Shower`` fields), then ``mask`` (after ``TailcutsClean``) and ``hillas`` (after
``HillasParameters``, which drops ``image`` and ``mask``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from traitlets import Bool, Dict, Float, Int

from pipeline import Component, RoutingError

#: Telescopes 1 to N_LST are LSTs, the others up to N_TELESCOPES are MSTs.
N_LST = 4
N_TELESCOPES = 20

#: Event keys that hold per-pixel arrays.
IMAGE_KEYS = ("image", "mask")

#: Axial-coordinate steps from a hexagonal pixel to its six neighbours.
_HEX_STEPS = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (1, -1), (-1, 1)])

#: Ranges of the simulated showers: small enough that a shower stays inside the camera.
MAX_OFFSET = 0.3  # metres from the camera centre
LENGTH_RANGE = (0.08, 0.20)  # metres
WIDTH_RANGE = (0.04, 0.08)  # metres, and never more than the length


@dataclass(frozen=True, eq=False)
class CameraGeometry:
    """Pixel centres of a camera, in metres, and each pixel's neighbours."""

    pix_x: np.ndarray
    pix_y: np.ndarray
    pixel_area: float  # m², the same for every pixel
    neighbors: np.ndarray  # (n_pixels, 6) pixel indices; the index n_pixels pads a missing neighbour

    @property
    def n_pixels(self) -> int:
        """The number of pixels."""
        return self.pix_x.size

    def neighbor_count(self, selected: np.ndarray) -> np.ndarray:
        """For each pixel, how many of its neighbours are True in the boolean array ``selected``."""
        return np.append(selected, False)[self.neighbors].sum(axis=1)


@functools.cache
def hexagonal_camera(n_rings: int = 20, pixel_spacing: float = 0.05) -> CameraGeometry:
    """A centre pixel and ``n_rings`` rings of hexagonal pixels ``pixel_spacing`` metres apart."""
    q, r = np.mgrid[-n_rings : n_rings + 1, -n_rings : n_rings + 1]
    inside = np.abs(q + r) <= n_rings
    q, r = q[inside], r[inside]
    n_pixels = q.size
    # A one-cell margin of padding around the axial grid spares the neighbour lookup any bounds checks.
    offset = n_rings + 1
    index = np.full((2 * offset + 1, 2 * offset + 1), n_pixels)
    index[q + offset, r + offset] = np.arange(n_pixels)
    neighbors = index[q[:, None] + offset + _HEX_STEPS[:, 0], r[:, None] + offset + _HEX_STEPS[:, 1]]
    pix_x = pixel_spacing * (q + r / 2)
    pix_y = pixel_spacing * r * math.sqrt(3) / 2
    for array in (pix_x, pix_y, neighbors):
        array.flags.writeable = False  # shared by every thread of the process
    return CameraGeometry(pix_x, pix_y, math.sqrt(3) / 2 * pixel_spacing**2, neighbors)


@dataclass(frozen=True)
class Shower:
    """An elliptical 2D-Gaussian shower image: centre and sigmas in metres, psi in radians, p.e."""

    x: float
    y: float
    length: float  # sigma along the major axis
    width: float  # sigma along the minor axis
    psi: float  # angle of the major axis from the x axis, in [-pi/2, pi/2)
    intensity: float  # total p.e. of the Gaussian

    def image(self, camera: CameraGeometry) -> np.ndarray:
        """The mean p.e. the shower puts in each pixel (no noise)."""
        dx, dy = camera.pix_x - self.x, camera.pix_y - self.y
        cos, sin = math.cos(self.psi), math.sin(self.psi)
        along = (dx * cos + dy * sin) / self.length
        across = (dy * cos - dx * sin) / self.width
        density = np.exp(-0.5 * (along**2 + across**2)) / (2 * math.pi * self.length * self.width)
        return self.intensity * camera.pixel_area * density


def random_shower(rng: np.random.Generator, min_intensity: float, max_intensity: float) -> Shower:
    """A shower inside MAX_OFFSET of the centre, its intensity log-uniform in the given range."""
    offset, direction = MAX_OFFSET * math.sqrt(rng.random()), rng.uniform(-math.pi, math.pi)
    length = rng.uniform(*LENGTH_RANGE)
    return Shower(
        x=offset * math.cos(direction),
        y=offset * math.sin(direction),
        length=length,
        width=rng.uniform(WIDTH_RANGE[0], min(WIDTH_RANGE[1], length)),
        psi=rng.uniform(-math.pi / 2, math.pi / 2),
        intensity=math.exp(rng.uniform(math.log(min_intensity), math.log(max_intensity))),
    )


def telescope_type(tel_id: int) -> str:
    """The type of telescope ``tel_id``: "LST" or "MST"."""
    return "LST" if tel_id <= N_LST else "MST"


def pixel_gains(n_pixels: int, mean_gain: float, spread: float, seed: int) -> np.ndarray:
    """Per-pixel gains (ADC counts per p.e.), log-normal around ``mean_gain`` so always positive."""
    return mean_gain * np.exp(spread * np.random.default_rng(seed).standard_normal(n_pixels))


def tailcuts_mask(
    camera: CameraGeometry, image: np.ndarray, picture: float, boundary: float, min_neighbors: int
) -> np.ndarray:
    """The pixels a two-threshold (tailcuts) cleaning keeps, as a boolean array.

    A picture pixel is at least ``picture`` p.e. and has at least ``min_neighbors`` neighbours of
    at least ``boundary`` p.e.; a boundary pixel is at least ``boundary`` p.e. and next to a
    picture pixel. (ctapipe's ``tailcuts_clean`` counts neighbours above the picture threshold.)
    """
    above_boundary = image >= boundary
    picture_pixels = (image >= picture) & (camera.neighbor_count(above_boundary) >= min_neighbors)
    return picture_pixels | (above_boundary & (camera.neighbor_count(picture_pixels) > 0))


def hillas_parameters(camera: CameraGeometry, image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Intensity (p.e.), centroid x/y, length and width (metres) and psi (radians, in [-pi/2, pi/2)).

    The moments of the pixels in ``mask`` weighted by their p.e.: length and width are the
    square roots of the covariance's eigenvalues, psi the angle of the major axis from x.
    """
    weights = image[mask]
    intensity = weights.sum()
    if not intensity > 0:
        raise ValueError(f"Hillas parameters need a positive cleaned intensity, got {intensity} p.e.")
    x, y = camera.pix_x[mask], camera.pix_y[mask]
    cx, cy = np.dot(weights, x) / intensity, np.dot(weights, y) / intensity
    dx, dy = x - cx, y - cy
    sxy = np.dot(weights, dx * dy)
    covariance = np.array([[np.dot(weights, dx * dx), sxy], [sxy, np.dot(weights, dy * dy)]]) / intensity
    variances, axes = np.linalg.eigh(covariance)  # ascending: the major axis is the last column
    psi = (math.atan2(axes[1, 1], axes[0, 1]) + math.pi / 2) % math.pi - math.pi / 2
    # Rounding can make the minor variance of a one-row image slightly negative.
    width, length = np.sqrt(np.clip(variances, 0.0, None))
    return {
        "intensity": float(intensity),
        "x": float(cx),
        "y": float(cy),
        "length": float(length),
        "width": float(width),
        "psi": psi,
    }


class CameraResponse(Component):
    """The camera's readout, shared by the simulator and the calibration: set it once for both."""

    pedestal = Float(400.0, help="ADC counts a pixel reads with no light.").tag(config=True)
    mean_gain = Float(8.0, min=0.01, help="Mean pixel gain, in ADC counts per p.e.").tag(config=True)
    gain_spread = Float(
        0.1, min=0.0, help="Pixel-to-pixel gain spread: the sigma of the gains' natural logarithm."
    ).tag(config=True)
    gain_seed = Int(1, help="Seed of the pixel gains: the simulator and the calibration must agree.").tag(config=True)

    def gains(self) -> np.ndarray:
        """The gain of each pixel of the camera, in ADC counts per p.e."""
        return pixel_gains(hexagonal_camera().n_pixels, self.mean_gain, self.gain_spread, self.gain_seed)


class SimulatedCamera(CameraResponse):
    """Producer: events of random telescopes, each a raw image of one Gaussian shower plus noise."""

    n_events = Int(1000, min=0, help="How many events to simulate.").tag(config=True)
    seed = Int(0, help="Seed of the telescopes, showers and noise.").tag(config=True)
    noise_pe = Float(1.5, min=0.0, help="RMS of the Gaussian noise added to each pixel, in p.e.").tag(config=True)
    min_intensity = Float(100.0, min=1.0, help="Smallest shower intensity, in p.e.").tag(config=True)
    max_intensity = Float(5000.0, min=1.0, help="Largest shower intensity, in p.e.").tag(config=True)

    def run(self) -> Iterator[dict[str, Any]]:
        """Yield each event; its image is rounded to whole ADC counts."""
        rng = np.random.default_rng(self.seed)
        camera, gains = hexagonal_camera(), self.gains()
        for event_id in range(self.n_events):
            tel_id = int(rng.integers(1, N_TELESCOPES + 1))
            shower = random_shower(rng, self.min_intensity, self.max_intensity)
            pe = shower.image(camera) + rng.normal(0.0, self.noise_pe, camera.n_pixels)
            yield {
                "event_id": event_id,
                "tel_id": tel_id,
                "tel_type": telescope_type(tel_id),
                "image": np.rint(self.pedestal + gains * pe),
                "true": asdict(shower),
            }

    def __length_hint__(self) -> int:
        """How many events it yields (the progress display's total)."""
        return self.n_events


class Calibrate(CameraResponse):
    """Stager: turns the raw image from ADC counts into p.e. (pedestal subtracted, divided by gain)."""

    def init(self) -> None:
        """Compute the pixel gains."""
        self._gains = self.gains()

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        """Return the event with its image in p.e."""
        event["image"] = (event["image"] - self.pedestal) / self._gains
        return event


class TailcutsClean(Component):
    """Stager: adds the boolean ``mask`` of the pixels a tailcuts cleaning keeps.

    An event with no pixel left is filtered: it has nothing to parametrise.
    """

    picture_threshold = Float(10.0, help="p.e. a picture (core) pixel needs.").tag(config=True)
    boundary_threshold = Float(5.0, help="p.e. a boundary pixel, next to a picture pixel, needs.").tag(config=True)
    min_neighbors = Int(
        2, min=0, help="Neighbours above the boundary threshold a picture pixel needs (isolated noise has none)."
    ).tag(config=True)

    def init(self) -> None:
        """Take the camera geometry."""
        self._camera = hexagonal_camera()

    def run(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Return the event with its mask, or None when no pixel survives."""
        mask = tailcuts_mask(
            self._camera, event["image"], self.picture_threshold, self.boundary_threshold, self.min_neighbors
        )
        if not mask.any():
            self.log.debug("event %s: no pixel survives the cleaning", event["event_id"])
            return None
        event["mask"] = mask
        return event


class HillasParameters(Component):
    """Stager: adds the ``hillas`` parameters of the cleaned image and drops the pixel arrays."""

    min_intensity = Float(0.0, min=0.0, help="Filter events whose cleaned image holds fewer p.e.").tag(config=True)
    keep_images = Bool(False, help="Keep the image and mask arrays in the output.").tag(config=True)

    def init(self) -> None:
        """Take the camera geometry."""
        self._camera = hexagonal_camera()

    def run(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Return the event with its Hillas parameters, or None below ``min_intensity``."""
        hillas = hillas_parameters(self._camera, event["image"], event["mask"])
        if hillas["intensity"] < self.min_intensity:
            return None
        if not self.keep_images:
            event = {key: value for key, value in event.items() if key not in IMAGE_KEYS}
        event["hillas"] = hillas
        return event


class RouteByTelescope(Component):
    """Stager: sends each event to the next step that its telescope type maps to."""

    # An untyped Dict: the config validator checks traits without an instance, which typed Dicts refuse.
    routes = Dict(
        default_value={"LST": "LST_HILLAS", "MST": "MST_HILLAS"},
        help="The next step for each telescope type.",
    ).tag(config=True)

    def init(self) -> None:
        """Check that every route leads to one of the next steps."""
        unknown = sorted(str(name) for name in self.routes.values() if name not in self.next_steps)
        if unknown:
            raise RoutingError(
                f"step {self.step_name!r}: routes lead to {', '.join(unknown)}, "
                f"which are not among its next steps ({', '.join(self.next_steps) or 'none'})"
            )

    def run(self, event: dict[str, Any]) -> None:
        """Send the event to its telescope type's step."""
        tel_type = event["tel_type"]
        if tel_type not in self.routes:
            raise RoutingError(
                f"step {self.step_name!r}: no route for telescope type {tel_type!r} "
                f"(routes: {', '.join(f'{t} -> {s}' for t, s in self.routes.items())})"
            )
        self.send_msg(event, self.routes[tel_type])
