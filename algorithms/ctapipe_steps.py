"""ctapipe's own components inside pipeline steps: read events, calibrate, clean and parametrise
their images, and write the parameters (configs/ctapipe_toy.json; docs/ctapipe.md).

Each step builds ctapipe's components with ``parent=self`` and lists their classes in
``child_classes``, so that one JSON config sets the steps' options and ctapipe's, in ctapipe's own
section names (``"ImageProcessor"``, ``"TailcutsImageCleaner"``, ``"EventSource"`` ...). The
messages are ctapipe's ``ArrayEventContainer`` events. This module needs the ``ctapipe`` extra
(``pip install -e '.[ctapipe]'``); nothing else in the project imports it.

Without an input file the events come from ctapipe's ``ToyEventSource`` on a toy subarray of
telescopes with the hexagonal camera of :mod:`algorithms.camera`, which needs no download.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

try:  # first, so that a missing extra is one line that says how to install it
    import ctapipe  # noqa: F401
except ModuleNotFoundError as missing:
    raise ModuleNotFoundError(f"{missing.msg}: algorithms.ctapipe_steps needs the ctapipe extra (pip install -e "
                              "'.[ctapipe]')", name=missing.name) from None

import astropy.units as u
import numpy as np
from astropy.coordinates import EarthLocation
from ctapipe.calib import CameraCalibrator, GainSelector
from ctapipe.containers import (
    ArrayEventContainer,
    DL0Container,
    MonitoringContainer,
    R0Container,
    R1Container,
    TelEventIndexContainer,
)
from ctapipe.coordinates import CameraFrame
from ctapipe.core import QualityQuery
from ctapipe.core.traits import classes_with_traits
from ctapipe.image import ImageCleaner, ImageModifier, ImageProcessor
from ctapipe.image.extractor import ImageExtractor
from ctapipe.image.reducer import DataVolumeReducer
from ctapipe.instrument import (
    CameraDescription,
    CameraGeometry,
    CameraReadout,
    OpticsDescription,
    SubarrayDescription,
    TelescopeDescription,
)
from ctapipe.instrument.camera.geometry import PixelShape
from ctapipe.io import EventSource, HDF5TableWriter
from ctapipe.io.toymodel import ToyEventSource
from traitlets import Bool, Int, TraitError, Unicode
from traitlets.config import Configurable

from algorithms.camera import hexagonal_camera
from pipeline import Component
from pipeline.config.traits import OutputFile

#: The toy telescopes' focal length: an MST's (ctapipe turns camera metres into sky degrees with it).
TOY_FOCAL_LENGTH = 16.0 * u.m
#: Metres between two neighbouring toy telescopes on the ground (a square grid).
TOY_SPACING = 100.0
#: Where the toy subarray stands: La Palma, as in ctapipe's own tests.
TOY_SITE = EarthLocation(lon=-17.89 * u.deg, lat=28.76 * u.deg, height=2200 * u.m)

#: The HDF5 group and table name of each telescope's parameters: those of ctapipe's DataWriter.
PARAMETERS_GROUP = "dl1"
PARAMETERS_TABLE = "event/telescope/parameters/tel_{tel_id:03d}"


def unique(classes: Sequence[type[Configurable]]) -> tuple[type[Configurable], ...]:
    """``classes`` without repeats, in order."""
    return tuple(dict.fromkeys(classes))


class CtapipeError(Exception):
    """A ctapipe component refused its options or its input: the message names the class."""


@contextmanager
def ctapipe_errors(class_name: str) -> Iterator[None]:
    """Turn what building or running ctapipe's ``class_name`` raises into one line naming it."""
    try:
        yield
    except Exception as err:  # ctapipe raises TraitError, ValueError, OSError and its own types
        # ctapipe's traits raise TraitError(problem, expected, trait): the problem alone is the message.
        detail = err.args[0] if isinstance(err, TraitError) and len(err.args) > 1 else str(err)
        one_line = " ".join(str(detail).split())  # some of ctapipe's messages run over several lines
        raise CtapipeError(f"ctapipe's {class_name}: {one_line or type(err).__name__}") from err


@functools.cache
def toy_subarray(n_telescopes: int) -> SubarrayDescription:
    """``n_telescopes`` MST-like telescopes on a square grid, each with algorithms.camera's camera."""
    camera = hexagonal_camera()
    geometry = CameraGeometry(
        "ToyCam",
        pix_id=np.arange(camera.n_pixels),
        pix_x=camera.pix_x * u.m,
        pix_y=camera.pix_y * u.m,
        pix_area=np.full(camera.n_pixels, camera.pixel_area) * u.m**2,
        pix_type=PixelShape.HEXAGON,
        frame=CameraFrame(focal_length=TOY_FOCAL_LENGTH),
    )
    readout = CameraReadout(
        "ToyCam", sampling_rate=1 * u.GHz, reference_pulse_shape=np.ones((1, 10)),
        reference_pulse_sample_width=1 * u.ns, n_channels=1, n_pixels=camera.n_pixels, n_samples=40,
    )
    optics = OpticsDescription(
        "ToyMST", size_type="MST", n_mirrors=1, equivalent_focal_length=TOY_FOCAL_LENGTH,
        effective_focal_length=TOY_FOCAL_LENGTH, mirror_area=100 * u.m**2, n_mirror_tiles=86,
        reflector_shape="DAVIES_COTTON",
    )
    telescope = TelescopeDescription("ToyMST", optics=optics, camera=CameraDescription("ToyCam", geometry, readout))
    side = int(np.ceil(np.sqrt(n_telescopes)))
    positions = {tel_id: [TOY_SPACING * ((tel_id - 1) % side), TOY_SPACING * ((tel_id - 1) // side), 0.0] * u.m
                 for tel_id in range(1, n_telescopes + 1)}
    return SubarrayDescription("toy", tel_positions=positions, tel_descriptions=dict.fromkeys(positions, telescope),
                               reference_location=TOY_SITE)


def complete_toy_event(event: ArrayEventContainer) -> ArrayEventContainer:
    """Give an event the empty containers that ToyEventSource leaves out and that
    CameraCalibrator and ImageProcessor read (they fail on its ``None``)."""
    for name, container in (("r0", R0Container), ("r1", R1Container), ("dl0", DL0Container),
                            ("monitoring", MonitoringContainer)):
        if event[name] is None:
            event[name] = container()
    return event


def has_waveforms(event: ArrayEventContainer) -> bool:
    """Whether the event has waveforms to calibrate (ctapipe-process calibrates only then)."""
    return bool(event.r1.tel or event.dl0.tel)


def drop_pixel_data(event: ArrayEventContainer) -> ArrayEventContainer:
    """The event without its waveforms and images: once parametrised, the writer needs neither,
    and they are most of what would be pickled to the next step."""
    for level in (event.r0, event.r1, event.dl0):
        level.tel.clear()
    for dl1 in event.dl1.tel.values():
        dl1.image = dl1.peak_time = dl1.image_mask = None
    if event.simulation is not None:
        for simulated in event.simulation.tel.values():
            simulated.true_image = None
    return event


def write_parameters(writer: HDF5TableWriter, event: ArrayEventContainer) -> None:
    """One row per telescope of the event, in the table of that telescope (DataWriter's layout)."""
    for tel_id, dl1 in event.dl1.tel.items():
        index = TelEventIndexContainer(obs_id=event.index.obs_id, event_id=event.index.event_id, tel_id=tel_id)
        writer.write(PARAMETERS_TABLE.format(tel_id=tel_id), [index, *dl1.parameters.values()])


def open_writer(path: str, parent: Configurable) -> HDF5TableWriter:
    """ctapipe's HDF5TableWriter on a new file ``path``, configured through ``parent``."""
    return HDF5TableWriter(path, group_name=PARAMETERS_GROUP, mode="w", add_prefix=True, parent=parent)


class ToySource(ToyEventSource):
    """ctapipe's ToyEventSource, built with ``parent=``: in ctapipe 0.28 its base TelescopeComponent
    hands ``config`` and ``parent`` on by position to EventSource, which takes them for
    ``input_url`` and ``config``, so ToyEventSource(..., parent=step) fails. The "ToyEventSource"
    section of a config still applies: it is this class's base."""

    def __init__(self, subarray: SubarrayDescription, parent: Configurable) -> None:
        EventSource.__init__(self, parent=parent)
        self.subarray = subarray  # TelescopeComponent's setter: the telescope parameters learn the telescopes
        # the rest of ToyEventSource.__init__
        self._camera_radii: dict[Any, Any] = {}
        self.rng = np.random.default_rng(self.seed)


class EventInput(Component):
    """Where the events come from, for the reader and the image processing: set it once for both."""

    input_url = Unicode(
        "", help="A file that one of ctapipe's EventSources reads (a sim_telarray .simtel.zst file, a ctapipe "
        "HDF5 file); empty: ctapipe's ToyEventSource, on a toy subarray."
    ).tag(config=True)
    toy_telescopes = Int(
        4, min=1, help="Telescopes of the toy subarray, each with the hexagonal camera of algorithms.camera."
    ).tag(config=True)

    @property
    def url(self) -> str:
        """The input: ``input_url``, or else ctapipe's own ``EventSource.input_url`` (what ``ctapipe-process --input``
        sets), read where ctapipe's tools read it (it was taken, and toy events were read instead)."""
        if self.input_url:
            return self.input_url
        with ctapipe_errors("EventSource"):
            configured = EventSource._find_input_url_in_config(parent=self)
        return str(configured) if configured else ""

    def subarray(self) -> SubarrayDescription:
        """The telescopes of the input: the file's, or the toy subarray."""
        url = self.url
        if not url:
            return toy_subarray(self.toy_telescopes)
        with ctapipe_errors("SubarrayDescription"):
            return SubarrayDescription.read(url)

    def open_source(self) -> EventSource:
        """ctapipe's EventSource of the input (the subclass that reads it), or its ToyEventSource."""
        url = self.url
        if not url:
            with ctapipe_errors("ToyEventSource"):
                source = ToySource(toy_subarray(self.toy_telescopes), parent=self)
            if source.max_events is None:
                raise CtapipeError("ctapipe's ToyEventSource: its stream has no end: set EventSource.max_events")
            return source
        with ctapipe_errors("EventSource"):
            return EventSource(url, parent=self)


class ReadEvents(EventInput):
    """Producer: ctapipe's events, from ``input_url`` or from ctapipe's ToyEventSource."""

    child_classes = unique([*classes_with_traits(EventSource), *classes_with_traits(GainSelector)])

    def check(self) -> None:
        """Open the source once: a file it cannot read, or a bad option, stops the run before it starts."""
        self.open_source().close()

    def init(self) -> None:
        """Open the source."""
        self.source = self.open_source()

    def run(self) -> Iterator[ArrayEventContainer]:
        """Yield each event."""
        with ctapipe_errors(type(self.source).__name__):
            for event in self.source:
                yield complete_toy_event(event)

    def finish(self) -> None:
        """Close the source."""
        self.source.close()

    def __length_hint__(self) -> int:
        """The source's ``max_events``, when it is set (the progress display's total)."""
        with self.open_source() as source:
            return NotImplemented if source.max_events is None else source.max_events


class ProcessImages(EventInput):
    """Stager: ctapipe's CameraCalibrator (events with waveforms) and ImageProcessor (cleaning and
    image parameters) on each event, as ctapipe-process runs them."""

    child_classes = unique([
        CameraCalibrator, ImageProcessor, *classes_with_traits(ImageExtractor),
        *classes_with_traits(DataVolumeReducer), *classes_with_traits(ImageCleaner),
        *classes_with_traits(ImageModifier), *classes_with_traits(QualityQuery),
    ])

    keep_images = Bool(
        False, help="Send the events on with their waveforms and images (the writer needs only the parameters)."
    ).tag(config=True)

    def check(self) -> None:
        """Build the components once, so that a bad option stops the run before it starts."""
        self.init()

    def init(self) -> None:
        """Build ctapipe's calibrator and image processor for the input's telescopes."""
        subarray = self.subarray()
        with ctapipe_errors("CameraCalibrator"):
            self.calibrate = CameraCalibrator(subarray, parent=self)
        with ctapipe_errors("ImageProcessor"):
            self.process = ImageProcessor(subarray, parent=self)

    def run(self, event: ArrayEventContainer) -> ArrayEventContainer:
        """The event with its image parameters (and, unless keep_images, without its pixel data)."""
        if has_waveforms(event):
            self.calibrate(event)
        self.process(event)
        return event if self.keep_images else drop_pixel_data(event)


class WriteParameters(Component):
    """Consumer: writes each telescope's image parameters with ctapipe's HDF5TableWriter, one row
    per telescope event, in the tables where ctapipe's DataWriter puts them; in one worker (it replaces its file)."""

    child_classes = (HDF5TableWriter,)
    one_worker = True

    output_path = OutputFile(
        "events.dl1.h5", help="The HDF5 file to write (replaced): /dl1/event/telescope/parameters/tel_NNN."
    ).tag(config=True)

    def init(self) -> None:
        """Create the file."""
        with ctapipe_errors("HDF5TableWriter"):
            self.writer = open_writer(self.output_path, self)

    def run(self, event: ArrayEventContainer) -> None:
        """Write the event's rows."""
        write_parameters(self.writer, event)

    def finish(self) -> None:
        """Close the file."""
        self.writer.close()


def plain_loop(config: Any) -> int:
    """The same work as ctapipe's own loop in one process (as ctapipe-process runs it), configured
    by the traitlets ``config`` of a pipeline config: read, calibrate, process, write. Returns the
    number of events."""
    events = 0
    reader = ReadEvents(config=config)
    with reader.open_source() as source:
        subarray = source.subarray
        calibrate = CameraCalibrator(subarray, parent=reader)
        process = ImageProcessor(subarray, parent=reader)
        with open_writer(WriteParameters(config=config).output_path, reader) as writer:
            for event in source:
                complete_toy_event(event)
                if has_waveforms(event):
                    calibrate(event)
                process(event)
                write_parameters(writer, drop_pixel_data(event))
                events += 1
    return events
