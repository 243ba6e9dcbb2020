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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

try:  # first, so that a missing extra is one line that says how to install it
    import ctapipe  # noqa: F401
except ModuleNotFoundError as missing:
    raise ModuleNotFoundError(f"{missing.msg}: algorithms.ctapipe_steps needs the ctapipe extra (pip install -e "
                              "'.[ctapipe]')", name=missing.name) from None

import astropy.units as u
import numpy as np
import tables
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
from ctapipe.core import Component as CtapipeComponent
from ctapipe.core import QualityQuery, TelescopeComponent
from ctapipe.core.expression_engine import ExpressionError
from ctapipe.core.traits import TelescopeParameter, classes_with_traits
from ctapipe.image import ImageCleaner, ImageModifier, ImageProcessor
from ctapipe.image import toymodel as image_toymodel
from ctapipe.image.extractor import ImageExtractor
from ctapipe.image.image_processor import ImageQualityQuery
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
from traitlets import Bool, Int, TraitError
from traitlets.config import Config, Configurable
from traitlets.config.loader import DeferredConfig

from algorithms.camera import hexagonal_camera
from pipeline import Component
from pipeline.config.locks import refuse_in_use
from pipeline.config.misplaced import subclasses
from pipeline.config.traits import InputFile, OutputFile

#: The option of WriteParameters that names its output, as a refusal names it.
OUTPUT_SETTING = "WriteParameters.output_path"
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
def ctapipe_errors(class_name: str, setting: str = "") -> Iterator[None]:
    """Turn what building or running ctapipe's ``class_name`` raises into one line naming it, after ``setting`` (the
    option and value it failed on, ``EventSource.input_url 'x'``: a step's check() error naming an option is
    attributed to the command line when the option came from there)."""
    try:
        yield
    except Exception as err:  # ctapipe raises TraitError, ValueError, OSError and its own types
        # ctapipe's traits raise TraitError(problem, expected, trait): the problem alone is the message.
        detail = err.args[0] if isinstance(err, TraitError) and len(err.args) > 1 else str(err)
        lines = [line for line in str(detail).splitlines() if line.strip()]
        while len(lines) > 1 and lines[-1].rstrip().endswith(":"):  # a heading of an empty list ("... missing
            lines.pop()  # dependencies:" with none named) reads as a message cut short
        one_line = " ".join(" ".join(lines).split())  # some of ctapipe's messages run over several lines
        where = f"{setting}: " if setting else ""
        raise CtapipeError(f"{where}ctapipe's {class_name}: {one_line or type(err).__name__}") from err


def id_ranges(ids: Iterable[int]) -> str:
    """Telescope ids as runs of consecutive ones: ``[1, 2, 3, 7]`` reads ``1-3, 7``."""
    runs: list[list[int]] = []
    for tel_id in sorted(ids):
        if runs and tel_id == runs[-1][-1] + 1:
            runs[-1].append(tel_id)
        else:
            runs.append([tel_id])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def components(component: Configurable) -> Iterator[Configurable]:
    """``component`` and the ctapipe components it holds, at any depth, each once: in its attributes,
    lists and dicts (CameraCalibrator keeps its extractors in a dict)."""
    seen: set[int] = set()
    pending = [component]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for value in vars(current).values():
            if isinstance(value, dict):
                value = list(value.values())
            items = value if isinstance(value, list | tuple) else [value]
            pending.extend(item for item in items if isinstance(item, CtapipeComponent))


def telescopes_using(component: Configurable, subarray: SubarrayDescription) -> dict[int, list[int]]:
    """The telescopes that each ctapipe component which serves only some of them is used for (by ``id()``): an
    image extractor, for those whose calibrator's ``image_extractor_type`` names it; the image modifier, for those
    whose ``apply_image_modifier`` is on. A component not here serves every telescope."""
    using: dict[int, list[int]] = {}

    def chosen(owner: Configurable, parameter: str, used: Callable[[Any], Configurable | None]) -> None:
        for tel_id in subarray.tel:
            try:
                held = used(getattr(owner, parameter).tel[tel_id])
            except KeyError:  # the selector gives this telescope nothing: its own check says so
                continue
            if held is not None:
                using.setdefault(id(held), []).append(tel_id)

    for held in components(component):
        if isinstance(held, CameraCalibrator):
            using.update({id(extractor): [] for extractor in held.image_extractors.values()})
            chosen(held, "image_extractor_type", held.image_extractors.get)
        elif isinstance(held, ImageProcessor):
            using[id(held.modify)] = []
            chosen(held, "apply_image_modifier", lambda on, held=held: held.modify if on else None)
    return using


def check_telescope_parameters(component: Configurable, subarray: SubarrayDescription) -> None:
    """Look up every TelescopeParameter of ``component`` and its ctapipe components for each telescope
    that uses it: patterns that leave a telescope without a value (a type or id that matches none)
    fail here, once, where ctapipe would raise a KeyError on every event of that telescope."""
    types = ", ".join(sorted(str(tel_type) for tel_type in subarray.telescope_types))
    using = telescopes_using(component, subarray)
    for held in components(component):
        for name, trait in held.traits().items():
            patterns = getattr(held, name) if isinstance(trait, TelescopeParameter) else None
            if patterns is None:
                continue
            # a TelescopeComponent attached its subarray when built: attaching again would repeat ctapipe's warnings
            if not isinstance(held, TelescopeComponent):
                patterns.attach_subarray(subarray)
            missing = []
            for tel_id in using.get(id(held), subarray.tel):
                try:
                    patterns.tel[tel_id]
                except KeyError:
                    missing.append(tel_id)
            if missing:
                raise CtapipeError(
                    f"ctapipe's {trait.this_class.__name__}.{name}: {[tuple(p) for p in patterns]} gives no value for "
                    f"telescopes {id_ranges(missing)} (ids {id_ranges(subarray.tel)}, types {types}): "
                    "expected a pattern for each, e.g. ('type', '*', value) first")


def check_image_queries(component: Configurable, subarray: SubarrayDescription) -> None:
    """Evaluate each image quality criterion of ``component``'s ctapipe components once, on an image of
    the first telescope's camera: a name it cannot read (a typo) fails here, not on every event."""
    tel_id = next(iter(subarray.tel))
    sample = {"image": np.ones(subarray.tel[tel_id].camera.geometry.n_pixels)}
    for held in components(component):
        if not isinstance(held, ImageQualityQuery):
            continue
        results = held.engine(sample)  # evaluates one criterion per next(), in order
        for name, expression in held.quality_criteria:
            try:
                next(results)
            except ExpressionError as err:
                reason = err.__cause__ or err.__context__ or err  # ctapipe raises a NameError's "from None"
                raise CtapipeError(
                    f"ctapipe's ImageQualityQuery.quality_criteria {name!r}: {expression!r} fails on an image "
                    f"({type(reason).__name__}: {reason}): expected an expression of image (the values of the "
                    "pixels the cleaning kept), np and u") from err


def unread_input_option(config: Config) -> str | None:
    """The first ``Source.input_url`` that ``config`` sets, at any depth, for a subclass of ctapipe's EventSource
    (``SimTelEventSource``, ``HDF5EventSource``, ``ToyEventSource``): the steps pass EventSource the input they
    read, which wins over those sections, so such an option was ignored and toy events read instead. None if none."""
    subclasses = {cls.__name__ for cls in classes_with_traits(EventSource)} - {EventSource.__name__}
    pending = [config]
    while pending:
        for name, value in pending.pop().items():
            if isinstance(value, Config):
                if name in subclasses and "input_url" in value:
                    return f"{name}.input_url"
                pending.append(value)
    return None


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
    tables.silence_hdf5_messages()  # HDF5 printed ~90 lines of its stack on stderr for an error said in one line
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

    def _generator(self) -> Iterator[ArrayEventContainer]:
        """ToyEventSource's events, their images' noise drawn from the start of ``seed``'s stream. ctapipe 0.28
        draws it from one generator per process (``ctapipe.image.toymodel.TOYMODEL_RNG``, seeded 0 on import), so
        a second source in a process (the next shard in the sequential mode) made other images of the same events."""
        image_toymodel.TOYMODEL_RNG = np.random.default_rng(self.seed)
        yield from super()._generator()


class EventInput(Component):
    """Where the events come from, for the reader and the image processing: set it once for both."""

    input_url = InputFile(
        "", help="A file that one of ctapipe's EventSources reads (a sim_telarray .simtel.zst file, a ctapipe "
        "HDF5 file); empty: ctapipe's ToyEventSource, on a toy subarray."
    ).tag(config=True)
    toy_telescopes = Int(
        4, min=1, help="Telescopes of the toy subarray, each with the hexagonal camera of algorithms.camera."
    ).tag(config=True)

    @property
    def url(self) -> str:
        """The input: ``input_url``, or else ctapipe's own ``EventSource.input_url`` (what ``ctapipe-process --input``
        sets), read where ctapipe's tools read it (it was taken, and toy events were read instead); a CtapipeError if
        the config sets the input of one of EventSource's subclasses, which nothing reads (``unread_input_option``)."""
        unread = unread_input_option(self.config)
        if unread is not None:
            raise CtapipeError(f"{unread} is not read: the steps give ctapipe's EventSource its input themselves "
                               "(expected EventInput.input_url or EventSource.input_url)")
        if self.input_url:
            return self.input_url
        with ctapipe_errors("EventSource"):
            configured = EventSource._find_input_url_in_config(parent=self)
        return str(configured) if configured else ""

    def check_one_input(self) -> None:
        """A CtapipeError if the section of another step's class sets the input otherwise than this step reads it:
        with ``--ReadEvents.toy_telescopes=6`` the reader's events had telescopes the image processing did not know,
        and each event failed with a KeyError (an input of the reader alone: telescopes it does not know)."""
        mine = {"input_url": self.url, "toy_telescopes": self.toy_telescopes}
        for cls in subclasses(EventInput):
            if cls in type(self).__mro__ or cls.__name__ not in self.config:
                continue
            section = self.config[cls.__name__]
            for name in mine.keys() & section.keys():
                theirs = section[name]
                if isinstance(theirs, DeferredConfig):  # as the command line gave it: a string
                    theirs = theirs.get_value(self.traits()[name])
                if theirs != mine[name] and (theirs or name != "input_url"):  # no input_url: EventSource's, as ours
                    raise CtapipeError(f"{cls.__name__}.{name} {theirs!r} is not what {type(self).__name__} reads "
                                       f"({mine[name]!r}): the steps read one input (expected EventInput.{name}, "
                                       "which sets it for all of them)")

    def input_files(self) -> list[str]:
        """The input when ctapipe's ``EventSource.input_url`` names it: no output of the run may be it (the writer
        emptied it as the run started)."""
        return [self.url] if self.url and not self.input_url else []

    def subarray(self) -> SubarrayDescription:
        """The telescopes of the input: the file's, or the toy subarray."""
        url = self.url
        if not url:
            return toy_subarray(self.toy_telescopes)
        with ctapipe_errors("SubarrayDescription", self.url_setting(url)):
            return SubarrayDescription.read(url)

    def url_setting(self, url: str) -> str:
        """The option that named ``url`` and its value, as the config names it: the section of this step's class (or
        of a base) that set ``input_url``, else ctapipe's ``EventSource.input_url``."""
        if not self.input_url:
            return f"EventSource.input_url {url!r}"
        # traitlets took the value from the most derived class whose section sets it
        named = next((cls.__name__ for cls in type(self).__mro__
                      if cls.__name__ in self.config and "input_url" in self.config[cls.__name__]), "EventInput")
        return f"{named}.input_url {url!r}"

    def open_source(self) -> EventSource:
        """ctapipe's EventSource of the input (the subclass that reads it), or its ToyEventSource."""
        url = self.url
        if not url:
            with ctapipe_errors("ToyEventSource"):
                source = ToySource(toy_subarray(self.toy_telescopes), parent=self)
            if source.max_events is None:
                raise CtapipeError("ctapipe's ToyEventSource: its stream has no end: set EventSource.max_events")
            return source
        with ctapipe_errors("EventSource", self.url_setting(url)):
            return EventSource(url, parent=self)


class ReadEvents(EventInput):
    """Producer: ctapipe's events, from ``input_url`` or from ctapipe's ToyEventSource."""

    child_classes = unique([*classes_with_traits(EventSource), *classes_with_traits(GainSelector)])

    def check(self) -> None:
        """Open the source once: a file it cannot read, or a bad option, stops the run before it starts."""
        self.check_one_input()
        with self.open_source() as source:
            check_telescope_parameters(source, source.subarray)

    def run(self) -> Iterator[ArrayEventContainer]:
        """Yield each event of a source opened for this run() and closed after it: the sequential mode
        runs run() once per shard on one instance, which a source opened in init() serves only once."""
        with self.open_source() as source, ctapipe_errors(type(source).__name__):
            for event in source:
                yield complete_toy_event(event)

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
        """Build the components once and resolve their per-telescope options and image criteria, so
        that a bad option stops the run before it starts. Not through init(): a subclass's init() runs
        once per worker, in the run, with what it does besides and what it returns."""
        self.check_one_input()
        calibrate, process = self.build()
        for built in (calibrate, process):
            check_telescope_parameters(built, process.subarray)
        check_image_queries(process, process.subarray)

    def init(self) -> None:
        """Build ctapipe's calibrator and image processor for the input's telescopes."""
        self.calibrate, self.process = self.build()

    def build(self) -> tuple[CameraCalibrator, ImageProcessor]:
        """ctapipe's calibrator and image processor for the input's telescopes, configured as this step."""
        subarray = self.subarray()
        with ctapipe_errors("CameraCalibrator"):
            calibrate = CameraCalibrator(subarray, parent=self)
        with ctapipe_errors("ImageProcessor"):
            process = ImageProcessor(subarray, parent=self)
        return calibrate, process

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
    ).tag(config=True, locked="record")  # claimed as the run starts: HDF5 empties a file before it finds its lock

    def init(self) -> None:
        """Create the file, which the run claimed before any step ran."""
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
        output_path = WriteParameters(config=config).output_path
        refuse_in_use(output_path, OUTPUT_SETTING)
        with open_writer(output_path, reader) as writer:
            for event in source:
                complete_toy_event(event)
                if has_waveforms(event):
                    calibrate(event)
                process(event)
                write_parameters(writer, drop_pixel_data(event))
                events += 1
    return events
