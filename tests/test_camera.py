"""Tests of the Cherenkov-camera demo steps, alone and as the example pipelines."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from traitlets.config import Config

from algorithms.camera import (
    N_LST,
    N_TELESCOPES,
    Calibrate,
    HillasParameters,
    RouteByTelescope,
    Shower,
    SimulatedCamera,
    TailcutsClean,
    hexagonal_camera,
    hillas_parameters,
)
from pipeline import Pipeline, RoutingError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CAMERA = hexagonal_camera()


def angle_difference(a: float, b: float) -> float:
    """The difference of two axis angles (defined modulo pi), in [-pi/2, pi/2)."""
    return (a - b + math.pi / 2) % math.pi - math.pi / 2


def started(component: Any) -> Any:
    """The component after its init()."""
    component.init()
    return component


def events(**traits: Any) -> list[dict[str, Any]]:
    """Every event a SimulatedCamera with these traits produces."""
    return list(SimulatedCamera(**traits).run())


def calibrated(event: dict[str, Any], config: Config | None = None) -> dict[str, Any]:
    """The event after Calibrate."""
    return started(Calibrate(config=config or Config())).run(event)


# --- geometry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n_rings", [0, 1, 3, 20])
def test_hexagonal_camera_has_the_centred_hexagonal_number_of_pixels(n_rings: int) -> None:
    assert hexagonal_camera(n_rings).n_pixels == 3 * n_rings * (n_rings + 1) + 1


def test_neighbours_are_the_pixels_one_spacing_away() -> None:
    camera = hexagonal_camera(n_rings=3, pixel_spacing=0.05)
    distance = np.hypot(camera.pix_x[:, None] - camera.pix_x, camera.pix_y[:, None] - camera.pix_y)
    expected = np.isclose(distance, 0.05)
    listed = np.zeros_like(expected)
    for pixel, row in enumerate(camera.neighbors):
        listed[pixel, row[row < camera.n_pixels]] = True
    assert np.array_equal(listed, expected)
    assert camera.neighbor_count(np.ones(camera.n_pixels, bool)).max() == 6


def test_shower_image_holds_the_shower_intensity() -> None:
    shower = Shower(x=0.1, y=-0.05, length=0.15, width=0.05, psi=0.3, intensity=1000.0)
    assert shower.image(CAMERA).sum() == pytest.approx(1000.0, rel=1e-3)


# --- SimulatedCamera --------------------------------------------------------------------------


def test_simulated_camera_yields_n_events_of_known_telescopes() -> None:
    simulated = events(n_events=200, seed=5)
    assert [e["event_id"] for e in simulated] == list(range(200))
    assert {e["tel_id"] for e in simulated} <= set(range(1, N_TELESCOPES + 1))
    assert all(e["tel_type"] == ("LST" if e["tel_id"] <= N_LST else "MST") for e in simulated)
    assert {e["tel_type"] for e in simulated} == {"LST", "MST"}
    image = simulated[0]["image"]
    assert image.shape == (CAMERA.n_pixels,) and image.dtype == np.float64
    assert set(simulated[0]["true"]) == {"x", "y", "length", "width", "psi", "intensity"}


def test_simulated_camera_is_reproducible_from_its_seed() -> None:
    first, again, other = events(n_events=3, seed=7), events(n_events=3, seed=7), events(n_events=3, seed=8)
    assert [e["true"] for e in first] == [e["true"] for e in again]
    assert np.array_equal(np.stack([e["image"] for e in first]), np.stack([e["image"] for e in again]))
    assert first[0]["true"] != other[0]["true"]


def test_simulated_images_are_pedestal_plus_shower_in_adc_counts() -> None:
    (event,) = events(n_events=1, noise_pe=0.0, pedestal=300.0)
    assert np.array_equal(event["image"], np.rint(event["image"]))
    dark = Shower(**event["true"]).image(CAMERA) < 1e-3
    assert np.all(event["image"][dark] == 300.0)
    assert event["image"].max() > 300.0 + 10 * 8.0  # the shower's brightest pixel, at the mean gain


# --- Calibrate --------------------------------------------------------------------------------


@pytest.mark.parametrize("response", [{}, {"pedestal": 250.0, "mean_gain": 5.0, "gain_spread": 0.3, "gain_seed": 9}])
def test_calibration_inverts_the_simulated_pedestal_and_gains(response: dict[str, float]) -> None:
    # One CameraResponse section configures the simulator and the calibration alike.
    config = Config({"CameraResponse": response})
    (event,) = list(SimulatedCamera(config=config, n_events=1, noise_pe=0.0).run())
    true_pe = Shower(**event["true"]).image(CAMERA)
    gains = SimulatedCamera(config=config).gains()
    pe = calibrated(event, config)["image"]
    # Rounding to whole ADC counts is the only difference: at most half a count.
    assert np.all(np.abs(pe - true_pe) <= 0.5 / gains + 1e-9)


def test_calibration_with_mismatched_gains_does_not_invert() -> None:
    (event,) = events(n_events=1, noise_pe=0.0)
    true_pe = Shower(**event["true"]).image(CAMERA)
    pe = calibrated(event, Config({"CameraResponse": {"gain_seed": 2}}))["image"]
    assert np.abs(pe - true_pe).max() > 1.0


# --- TailcutsClean ----------------------------------------------------------------------------


def pixel_at(x: float, y: float) -> int:
    """The pixel whose centre is nearest to (x, y)."""
    return int(np.argmin(np.hypot(CAMERA.pix_x - x, CAMERA.pix_y - y)))


def cleaned(image: np.ndarray, **traits: Any) -> dict[str, Any] | None:
    """What TailcutsClean makes of an event with this p.e. image."""
    return started(TailcutsClean(**traits)).run({"event_id": 0, "image": image})


def test_tailcuts_keeps_the_shower_and_removes_isolated_noise() -> None:
    shower = Shower(x=0.0, y=0.0, length=0.15, width=0.06, psi=0.5, intensity=3000.0).image(CAMERA)
    image = shower.copy()
    spike, pair = pixel_at(0.7, 0.0), [pixel_at(-0.7, 0.0), pixel_at(-0.75, 0.0)]
    lonely_boundary = pixel_at(0.0, 0.7)
    image[spike] = 50.0  # far above the picture threshold, but alone
    image[pair] = 30.0  # a picture pixel needs two neighbours above the boundary threshold
    image[lonely_boundary] = 7.0  # above the boundary threshold, next to no picture pixel
    mask = cleaned(image)["mask"]
    assert not mask[[spike, *pair, lonely_boundary]].any()
    assert np.all(mask[shower >= 10.0])  # every picture pixel of a smooth shower has bright neighbours
    boundary = (shower >= 5.0) & (shower < 10.0) & (CAMERA.neighbor_count(shower >= 10.0) > 0)
    assert boundary.any() and np.all(mask[boundary])
    assert not mask[shower < 5.0].any()


def test_tailcuts_without_a_neighbour_requirement_keeps_isolated_picture_pixels() -> None:
    image = np.zeros(CAMERA.n_pixels)
    spike = pixel_at(0.5, 0.5)
    image[spike] = 50.0
    assert np.flatnonzero(cleaned(image, min_neighbors=0)["mask"]).tolist() == [spike]


def test_tailcuts_filters_an_event_with_no_surviving_pixel() -> None:
    rng = np.random.default_rng(0)
    assert cleaned(rng.normal(0.0, 1.0, CAMERA.n_pixels)) is None


# --- HillasParameters -------------------------------------------------------------------------


def test_hillas_of_a_row_of_pixels_lies_along_it() -> None:
    row = np.isclose(CAMERA.pix_y, 0.0) & (np.abs(CAMERA.pix_x) <= 0.101)
    hillas = hillas_parameters(CAMERA, np.ones(CAMERA.n_pixels), row)
    assert hillas["intensity"] == 5.0
    assert (hillas["x"], hillas["y"], hillas["psi"], hillas["width"]) == pytest.approx((0, 0, 0, 0), abs=1e-12)
    assert hillas["length"] == pytest.approx(math.sqrt(np.mean(CAMERA.pix_x[row] ** 2)))


def test_hillas_refuses_an_empty_image() -> None:
    with pytest.raises(ValueError, match="positive cleaned intensity"):
        hillas_parameters(CAMERA, np.ones(CAMERA.n_pixels), np.zeros(CAMERA.n_pixels, bool))


def test_hillas_recovers_the_simulated_ellipse_at_low_noise() -> None:
    """Calibrated, cleaned, low-noise images give back the simulated shower.

    Tolerances, for 5 cm pixels and showers 4-20 cm sigma: centroid within 5 mm (a tenth of a
    pixel); length, width and intensity within 4 % (the cleaning cuts the Gaussian's faint tails,
    so they come out a little small); psi within 1 degree for showers at least 1.5 times longer
    than wide (psi means little for a round one).
    """
    clean = started(TailcutsClean(picture_threshold=1.0, boundary_threshold=0.5))
    hillas = started(HillasParameters())
    simulated = events(n_events=100, seed=3, noise_pe=0.1, min_intensity=2000.0, max_intensity=5000.0)
    for event in simulated:
        true = event["true"]
        found = hillas.run(clean.run(calibrated(event)))["hillas"]
        assert math.hypot(found["x"] - true["x"], found["y"] - true["y"]) < 0.005
        for name in ("length", "width", "intensity"):
            assert found[name] == pytest.approx(true[name], rel=0.04), name
        if true["length"] >= 1.5 * true["width"]:
            assert abs(angle_difference(found["psi"], true["psi"])) < math.radians(1.0)


def cleaned_event() -> dict[str, Any]:
    """A simulated event after Calibrate and TailcutsClean at default settings."""
    (event,) = events(n_events=1, seed=1, min_intensity=1000.0)
    return started(TailcutsClean()).run(calibrated(event))


def test_hillas_output_is_a_small_row_unless_asked_to_keep_images() -> None:
    row = started(HillasParameters()).run(cleaned_event())
    assert set(row) == {"event_id", "tel_id", "tel_type", "true", "hillas"}
    assert all(type(value) is float for value in row["hillas"].values())
    kept = started(HillasParameters(keep_images=True)).run(cleaned_event())
    assert {"image", "mask", "hillas"} <= set(kept)


def test_hillas_filters_events_below_its_intensity_cut() -> None:
    intensity = started(HillasParameters()).run(cleaned_event())["hillas"]["intensity"]
    assert started(HillasParameters(min_intensity=intensity * 0.99)).run(cleaned_event()) is not None
    assert started(HillasParameters(min_intensity=intensity * 1.01)).run(cleaned_event()) is None


# --- RouteByTelescope -------------------------------------------------------------------------


def router(captured: list[tuple[str | None, Any]], **traits: Any) -> RouteByTelescope:
    """A started RouteByTelescope whose sends land in ``captured`` as (target, message)."""
    route = RouteByTelescope(step_name="ROUTE", next_steps=("LST_HILLAS", "MST_HILLAS"), **traits)
    route._emit = lambda msg, target: captured.append((target, msg))
    return started(route)


def test_routing_sends_each_event_to_its_telescope_type_only() -> None:
    captured: list[tuple[str | None, Any]] = []
    route = router(captured)
    simulated = events(n_events=60, seed=2)
    for event in simulated:
        assert route.run(event) is None
    assert [msg["event_id"] for _, msg in captured] == list(range(60))
    assert {target for target, msg in captured if msg["tel_type"] == "LST"} == {"LST_HILLAS"}
    assert {target for target, msg in captured if msg["tel_type"] == "MST"} == {"MST_HILLAS"}


def test_routing_an_unknown_telescope_type_is_a_clear_error() -> None:
    route = router([])
    with pytest.raises(RoutingError, match="no route for telescope type 'SST'"):
        route.run({"event_id": 0, "tel_type": "SST"})


def test_routes_must_lead_to_next_steps() -> None:
    with pytest.raises(RoutingError, match="routes lead to SST_HILLAS"):
        router([], routes={"LST": "LST_HILLAS", "SST": "SST_HILLAS"})


# --- the example pipelines --------------------------------------------------------------------

MODES = [pytest.param({}, id="threads"), pytest.param({"Pipeline": {"mode": "sequential"}}, id="sequential")]


def run_config(name: str, output: Path, mode: dict[str, Any], n_events: int = 50) -> tuple[Any, list[dict]]:
    """Run configs/``name`` writing to ``output``; return the report and the rows, by event id."""
    overrides = {"JsonLinesWriter": {"path": str(output)}, "SimulatedCamera": {"n_events": n_events}, **mode}
    report = Pipeline.from_config(CONFIGS / name, overrides).run()
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    return report, sorted(rows, key=lambda row: row["event_id"])


@pytest.mark.parametrize("mode", MODES)
def test_example_pipeline_writes_one_row_per_cleaned_event(tmp_path: Path, mode: dict[str, Any]) -> None:
    report, rows = run_config("example.json", tmp_path / "events.jsonl", mode)
    assert report.exit_status == 0
    assert report["READER"].processed == report["READER"].emitted == 50
    assert report["CALIB"].received == report["CALIB"].emitted == 50
    assert report["CLEAN"].received == 50
    kept = report["CLEAN"].emitted
    assert 0 < kept < 50  # the faintest showers leave no pixel after cleaning
    assert report["HILLAS"].received == report["HILLAS"].emitted == kept
    assert report["WRITER"].received == report["WRITER"].processed == len(rows) == kept
    assert len({row["event_id"] for row in rows}) == kept
    for row in rows:
        assert set(row) == {"event_id", "tel_id", "tel_type", "true", "hillas"}
        assert abs(row["hillas"]["x"] - row["true"]["x"]) < 0.05  # within a pixel, at the default noise


def test_example_pipeline_gives_the_same_rows_in_both_modes(tmp_path: Path) -> None:
    _, threaded = run_config("example.json", tmp_path / "threads.jsonl", {})
    _, sequential = run_config("example.json", tmp_path / "sequential.jsonl", {"Pipeline": {"mode": "sequential"}})
    assert threaded == sequential


@pytest.mark.parametrize("mode", MODES)
def test_routing_pipeline_sends_each_telescope_type_down_its_branch(tmp_path: Path, mode: dict[str, Any]) -> None:
    report, rows = run_config("routing.json", tmp_path / "events.jsonl", mode, n_events=100)
    assert report.exit_status == 0
    routed = report["ROUTE"].emitted
    assert routed == report["CLEAN"].emitted == report["LST_HILLAS"].received + report["MST_HILLAS"].received
    assert report["LST_HILLAS"].received > 0 and report["MST_HILLAS"].received > 0
    assert report["WRITER"].received == report["LST_HILLAS"].emitted + report["MST_HILLAS"].emitted == len(rows)
    assert sum(row["tel_type"] == "LST" for row in rows) == report["LST_HILLAS"].emitted
    # Each branch has its own quality cut (routing.json's per-step config).
    assert min(row["hillas"]["intensity"] for row in rows if row["tel_type"] == "LST") >= 50.0
    assert min(row["hillas"]["intensity"] for row in rows if row["tel_type"] == "MST") >= 100.0
