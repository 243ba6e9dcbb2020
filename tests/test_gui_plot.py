"""The throughput plot is scaled to what is readable: a producer's start-up burst does not flatten the real
rates, and steps with equal rates each stay visible. The scale on numbers; the plot offscreen, by its pixels."""

from __future__ import annotations

import os

import pytest
from PySide6.QtGui import QColor, QImage

from gui.model import History, RunModel, StepView
from gui.plot_scale import STARTUP_SECONDS, overlap_groups, readable_top
from gui.protocol import Header
from gui.widgets.plot import MAX_TICKS, ThroughputPlot
from pipeline.console import humanize

# Read when pytest-qt makes the QApplication, after collection: the tests need no display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: Status times of a 30-second run, every half second.
TIMES = [0.5 * i for i in range(1, 61)]


def burst_then(rate: float, burst: tuple[float, ...] = (4000.0, 2600.0, 1300.0, 700.0)) -> list[float]:
    """A producer's rates: its start-up burst (queues filling), then the pace of the slowest step, +-5 %."""
    return [*burst, *(rate * (1 + 0.05 * ((i % 5) - 2) / 2) for i in range(len(TIMES) - len(burst)))]


def test_the_start_up_burst_does_not_set_the_scale() -> None:
    top = readable_top([(TIMES, burst_then(100.0)), (TIMES, burst_then(40.0, (900.0, 500.0)))])
    assert 100 <= top <= 110  # the real rates, not 4000


def test_a_runs_first_seconds_alone_are_shown_whole() -> None:
    early = [t for t in TIMES if t < STARTUP_SECONDS]
    assert readable_top([(early, burst_then(100.0)[: len(early)])]) == 4000.0


def test_a_short_spike_is_cut_but_the_rate_now_and_lasting_changes_always_fit() -> None:
    steady = [100.0] * len(TIMES)
    spiked = [*steady[:30], 5000.0, *steady[31:]]
    assert readable_top([(TIMES, spiked)]) == 100.0  # one point far above the step's own: a spike
    assert readable_top([(TIMES, [*steady[:-1], 900.0])]) == 900.0  # the latest point is now: it fits
    doubled = [100.0] * 30 + [1000.0] * 30  # a change that lasts
    assert readable_top([(TIMES, doubled)]) == 1000.0
    # A step ten times faster than the others (before a filter) is no spike: the scale is per step.
    assert readable_top([(TIMES, steady), (TIMES, [1000.0] * len(TIMES))]) == 1000.0
    assert readable_top([]) == readable_top([((), ())]) == 0.0


def test_lines_on_one_another_are_grouped_and_take_turns() -> None:
    equal, other = [50.0, 40.0, 40.0, 41.0], [150.0, 140.0, 141.0, 140.0]
    assert overlap_groups([equal, other, [51.0, 41.0, 39.0, 40.0]]) == [(0, 2), (0, 1), (1, 2)]
    assert overlap_groups([equal, other]) == [(0, 1), (0, 1)]
    assert overlap_groups([equal, [40.0, 41.0]]) == [(0, 2), (1, 2)]  # a step that joined late: the newest points
    assert overlap_groups([equal, equal, equal]) == [(0, 3), (1, 3), (2, 3)]


def colour_pixels(image: QImage, colour: QColor) -> int:
    """Pixels of ``image`` within a few units of ``colour`` (a line's core, antialiasing aside)."""
    count = 0
    for y in range(image.height()):
        for x in range(image.width()):
            pixel = image.pixelColor(x, y)
            count += abs(pixel.red() - colour.red()) + abs(pixel.green() - colour.green()) + abs(
                pixel.blue() - colour.blue()) <= 24
    return count


@pytest.fixture
def plot(qtbot) -> ThroughputPlot:
    """The plot of a run whose producer bursts at start-up, then runs with two steps at its very rate."""
    run = RunModel(Header(1, "a" * 32, "demo", "host", 1, 0.0))
    rates = {"READER": burst_then(100.0), "CALIB": burst_then(100.0), "CLEAN": burst_then(100.0, (900.0,)),
             "WRITER": burst_then(40.0, (300.0,))}
    for name, values in rates.items():
        run.steps[name] = StepView(name)
        history = run.history[name] = History()
        for time, rate in zip(TIMES, values, strict=True):
            history.add(time, rate)
    widget = ThroughputPlot()
    qtbot.addWidget(widget)
    widget.resize(600, 320)
    widget.refresh(run)
    widget.show()
    return widget


def test_the_plot_is_readable_and_every_line_shows(plot: ThroughputPlot) -> None:
    image = plot.grab().toImage()
    _, y_max, _ = plot.scale()
    assert y_max <= 150  # the rates of 40-100/s fill the plot, instead of the bottom 3 % of a 4000/s axis
    assert plot.peak_note == "peak 4000/s above the scale"
    # READER, CALIB and CLEAN have the same rate after their start-up: each colour still shows.
    for name, (colour, _) in plot.styles.items():
        assert colour_pixels(image, colour) > 40, name
    assert len({colour.name() for colour, _ in plot.styles.values()}) == 4


def test_without_a_burst_nothing_is_said_above_the_scale(plot: ThroughputPlot) -> None:
    plot.hidden = {"READER", "CALIB", "CLEAN"}
    plot.grab()
    assert plot.peak_note == "peak 300/s above the scale"  # WRITER's own start-up
    plot.series["WRITER"] = History()
    plot.series["WRITER"].add(1.0, 50.0)
    plot.grab()
    assert plot.peak_note == ""


@pytest.mark.parametrize("rate", [5e-324, 1e-300, 0.0, 1.7e308, float("inf")])
def test_any_rate_in_the_series_draws_a_bounded_axis(qtbot, rate: float) -> None:
    """A peer's rate of 5e-324 (or 1.7e308) raised inside paintEvent on every paint, and the monitor crashed at exit."""
    run = RunModel(Header(1, "a" * 32, "demo", "host", 1, 0.0))
    run.steps["A"] = StepView("A")
    run.history["A"] = History()
    run.history["A"].add(1.0, rate)  # straight into the series: the plot holds even to what the model never keeps
    widget = ThroughputPlot()
    qtbot.addWidget(widget)
    widget.resize(600, 320)
    widget.refresh(run)
    assert not widget.grab().isNull()  # pytest-qt fails the test on an exception inside paintEvent
    _, y_max, y_step = widget.scale()
    assert 0 < y_step <= y_max <= 2 * humanize.MAX_RATE
    assert y_max / y_step <= MAX_TICKS
