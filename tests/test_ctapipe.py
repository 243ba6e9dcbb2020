"""ctapipe inside steps (algorithms/ctapipe_steps.py, configs/ctapipe_toy.json): the example runs
end to end, in threads and in worker processes, and writes what ctapipe's own loop writes over the
same events; ctapipe's errors are one line. Skipped where ctapipe is not installed (the ``ctapipe``
extra), except the check that the framework never imports ctapipe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.traits import shown
from tests.cli_helpers import ROOT
from tests.process_helpers import wait_for

CONFIG = ROOT / "configs" / "ctapipe_toy.json"
#: Events per run: enough for every telescope to have rows, few enough for a loaded CI machine.
EVENTS = 40
#: Seconds a run may take: each worker process imports ctapipe and compiles its numba functions.
RUN_SECONDS = 150


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A Python command from ``cwd`` with the repository importable, its output captured.

    HOME is ``cwd``: astropy warns on stderr when the user's ~/.astropy and the tests' own
    XDG_CONFIG_HOME (conftest.py) both exist."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(cwd)}
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=RUN_SECONDS,
                          check=False, env=env)


def tables(path: Path) -> dict[str, Any]:
    """Each table of the file's /dl1 group, as a numpy record array."""
    pytables = pytest.importorskip("tables")
    with pytables.open_file(path) as h5:
        return {table._v_pathname: table.read() for table in h5.walk_nodes("/dl1", "Table")}


@pytest.fixture(scope="module")
def loop_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What ctapipe's own loop (algorithms.ctapipe_loop) writes for the example's first EVENTS events."""
    pytest.importorskip("ctapipe")
    directory = tmp_path_factory.mktemp("loop")
    result = run(["-m", "algorithms.ctapipe_loop", str(CONFIG), f"--EventSource.max_events={EVENTS}",
                  "--WriteParameters.output_path=loop.h5"], directory)
    assert result.returncode == 0, result.stderr
    assert f"{EVENTS} events in " in result.stderr
    return tables(directory / "loop.h5")


def test_importing_pipeline_never_imports_ctapipe() -> None:
    """The framework, its command line and the other example steps run without ctapipe loaded."""
    code = ("import sys, pipeline, pipeline.cli.run, pipeline.engine, algorithms.basic, algorithms.camera; "
            "pipeline.Pipeline.from_config('configs/chain.json'); print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('ctapipe', 'astropy', 'numba')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    assert (result.returncode, result.stdout) == (0, "[]\n"), result.stderr


def test_the_example_without_ctapipe_says_how_to_install_it(tmp_path: Path) -> None:
    """ctapipe made missing (installed or not): one line, exit status 2, naming the extra (it named astropy alone)."""
    code = ("import runpy, sys; sys.modules['ctapipe'] = None; sys.argv = ['pipeline-run', sys.argv[1]]; "
            "runpy.run_module('pipeline', run_name='__main__')")
    result = run(["-c", code, f"--config={CONFIG}"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert ("Pipeline.producer_conf.module: cannot import module 'algorithms.ctapipe_steps': ModuleNotFoundError: "
            in result.stderr)
    assert "algorithms.ctapipe_steps needs the ctapipe extra (pip install -e '.[ctapipe]')" in result.stderr


def threads_config(directory: Path) -> Path:
    """The example with its stage in 2 threads of the run's process instead of 2 worker processes."""
    document = json.loads(CONFIG.read_text(encoding="utf-8"))
    stage = document["Pipeline"]["stagers_conf"][0]
    del stage["nb_process"]
    stage["nb_thread"] = 2
    path = directory / "threads.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.timeout(2 * RUN_SECONDS)
@pytest.mark.parametrize("where", ["worker-processes", "threads", "sequential"])
def test_the_example_writes_what_ctapipes_own_loop_writes(
    where: str, tmp_path: Path, loop_output: dict[str, Any]
) -> None:
    """Same events, same parameters, same rows in event order, whether IMAGES runs in processes or threads."""
    np = pytest.importorskip("numpy")
    config = threads_config(tmp_path) if where == "threads" else CONFIG
    mode = ["--Pipeline.mode=sequential"] if where == "sequential" else []
    result = run(["-m", "pipeline", f"--config={config}", f"--EventSource.max_events={EVENTS}",
                  "--WriteParameters.output_path=pipeline.h5", "--no-progress", *mode], tmp_path)
    assert result.returncode == 0, result.stderr
    for step, received, processed in (("READER", 0, EVENTS), ("IMAGES", EVENTS, EVENTS), ("WRITER", EVENTS, EVENTS)):
        assert re.search(rf"^{step} +{received} +{processed} ", result.stderr, re.MULTILINE), result.stderr
    written = tables(tmp_path / "pipeline.h5")
    telescopes = [f"/dl1/event/telescope/parameters/tel_00{tel_id}" for tel_id in (1, 2, 3, 4)]
    assert sorted(written) == sorted(loop_output) == telescopes
    for name, rows in written.items():
        expected = loop_output[name]
        assert rows.dtype == expected.dtype
        assert np.all(np.diff(rows["event_id"]) > 0), f"{name}: not in event order"
        for column in rows.dtype.names:
            assert np.array_equal(rows[column], expected[column], equal_nan=True), f"{name}.{column} differs"
    assert sum(len(rows) for rows in written.values()) > EVENTS  # several telescopes saw most events


@pytest.mark.timeout(2 * RUN_SECONDS)
def test_the_loop_takes_a_command_line_option_over_the_section_nested_in_the_file_as_the_pipeline_does(
    tmp_path: Path, loop_output: dict[str, Any]
) -> None:
    """--TailcutsImageCleaner.picture_threshold_pe against the file's ImageProcessor.TailcutsImageCleaner: the loop
    ran with the file's thresholds (traitlets lets the nested section win), the pipeline with the command line's."""
    np = pytest.importorskip("numpy")
    options = [f"--EventSource.max_events={EVENTS}", "--TailcutsImageCleaner.picture_threshold_pe=30",
               "--TailcutsImageCleaner.boundary_threshold_pe=15"]
    loop = run(["-m", "algorithms.ctapipe_loop", str(CONFIG), *options, "--WriteParameters.output_path=loop.h5"],
               tmp_path)
    assert loop.returncode == 0, loop.stderr
    pipeline = run(["-m", "pipeline", f"--config={CONFIG}", *options, "--WriteParameters.output_path=pipeline.h5",
                    "--no-progress", "--Pipeline.mode=sequential"], tmp_path)
    assert pipeline.returncode == 0, pipeline.stderr
    looped, written = tables(tmp_path / "loop.h5"), tables(tmp_path / "pipeline.h5")
    assert sorted(looped) == sorted(written)
    pixels = "morphology_n_pixels"
    for name, rows in written.items():
        assert np.array_equal(rows[pixels], looped[name][pixels]), name
    assert any(not np.array_equal(rows[pixels], loop_output[name][pixels]) for name, rows in written.items())


#: ctapipe's ImageModifier on every telescope, with noise: it draws from a generator of its own in each instance.
MODIFIER_OPTIONS = [f"--EventSource.max_events={EVENTS}", "--ImageProcessor.apply_image_modifier=[('type', '*', True)]",
                    "--ImageModifier.rng_seed=1", "--ImageModifier.noise_level_dim_pixels=2.0",
                    "--ImageModifier.noise_level_bright_pixels=2.0"]


@pytest.mark.timeout(3 * RUN_SECONDS)
@pytest.mark.parametrize("where", ["sequential", "one-worker-process"])
def test_with_random_numbers_drawn_one_worker_writes_what_ctapipes_own_loop_writes(
    where: str, tmp_path: Path, loop_output: dict[str, Any]
) -> None:
    """docs/ctapipe.md's way to the loop's rows when ImageModifier draws noise: the stage in one worker, or the
    sequential mode (in several workers an event's noise depends on which worker's generator drew it)."""
    np = pytest.importorskip("numpy")
    loop = run(["-m", "algorithms.ctapipe_loop", str(CONFIG), *MODIFIER_OPTIONS,
                "--WriteParameters.output_path=loop.h5"], tmp_path)
    assert loop.returncode == 0, loop.stderr
    document = json.loads(CONFIG.read_text(encoding="utf-8"))
    document["Pipeline"]["stagers_conf"][0]["nb_process"] = 1
    config = tmp_path / "one.json"
    config.write_text(json.dumps(document), encoding="utf-8")
    mode = ["--Pipeline.mode=sequential"] if where == "sequential" else []
    result = run(["-m", "pipeline", f"--config={config}", *MODIFIER_OPTIONS, *mode,
                  "--WriteParameters.output_path=pipeline.h5", "--no-progress"], tmp_path)
    assert result.returncode == 0, result.stderr
    looped, written = tables(tmp_path / "loop.h5"), tables(tmp_path / "pipeline.h5")
    assert sorted(written) == sorted(looped)
    for name, rows in written.items():
        for column in rows.dtype.names:
            assert np.array_equal(rows[column], looped[name][column], equal_nan=True), f"{name}.{column} differs"
    intensity = "hillas_intensity"  # the noise was drawn: the rows are not those of the loop without it
    assert any(not np.array_equal(rows[intensity], loop_output[name][intensity]) for name, rows in written.items())


#: A reader of the user's own in shards, built on ReadEvents as the docs suggest: shard k of n yields every n-th event.
SHARDED_READER = '''
from algorithms.ctapipe_steps import ReadEvents


class EveryNthEvent(ReadEvents):
    """ReadEvents in shards: shard k of n yields every n-th event of the stream."""

    shardable = True

    def run(self):
        for number, event in enumerate(super().run()):
            if number % self.n_shards == self.shard:
                yield event
'''


@pytest.mark.timeout(2 * RUN_SECONDS)
@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_a_sharded_reader_built_on_read_events_reads_every_event_once_in_every_mode(
    mode: str, tmp_path: Path, loop_output: dict[str, Any]
) -> None:
    """READER in 2 shards writes the loop's rows in the sequential mode (one instance runs run() once per shard) as
    in threads (a process per shard). ReadEvents opened its source in init(), so in the sequential mode the second
    shard found it used up and half the events were missing."""
    np = pytest.importorskip("numpy")
    (tmp_path / "sharded.py").write_text(SHARDED_READER, encoding="utf-8")
    document = json.loads(CONFIG.read_text(encoding="utf-8"))
    document["Pipeline"]["producer_conf"].update(module="sharded", **{"class": "EveryNthEvent"}, nb_process=2)
    config = tmp_path / "sharded.json"
    config.write_text(json.dumps(document), encoding="utf-8")
    result = run(["-m", "pipeline", f"--config={config}", f"--Pipeline.mode={mode}",
                  f"--EventSource.max_events={EVENTS}", "--WriteParameters.output_path=pipeline.h5", "--no-progress"],
                 tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^READER +0 +{EVENTS} ", result.stderr, re.MULTILINE), result.stderr
    assert f"READER: messages per shard: {EVENTS // 2}, {EVENTS // 2}" in result.stderr
    written = tables(tmp_path / "pipeline.h5")
    assert sorted(written) == sorted(loop_output)
    for name, rows in written.items():
        rows = np.sort(rows, order="event_id")  # the shards' events interleave; the loop wrote them in order
        for column in rows.dtype.names:
            assert np.array_equal(rows[column], loop_output[name][column], equal_nan=True), f"{name}.{column} differs"


#: ProcessImages of the user's own, whose init() has a side effect (a line in inits.txt) and may say it cannot start.
COUNTED_INIT = '''
from algorithms.ctapipe_steps import ProcessImages
from traitlets import Bool


class CountedImages(ProcessImages):
    """ProcessImages that notes each init() and returns ``start``."""

    start = Bool(True).tag(config=True)

    def init(self):
        super().init()
        with open("inits.txt", "a", encoding="utf-8") as inits:
            inits.write("init\\n")
        return self.start
'''


@pytest.mark.timeout(RUN_SECONDS)
@pytest.mark.parametrize(("start", "status"), [(True, 0), (False, 1)])
def test_process_images_checks_without_running_a_subclasss_init(start: bool, status: int, tmp_path: Path) -> None:
    """check() ran the step's init() once more in the run's process: a subclass's side effects happened twice and its
    False was ignored there. Now init() runs once per worker, and its False stops the run (exit 1)."""
    pytest.importorskip("ctapipe")
    (tmp_path / "counted.py").write_text(COUNTED_INIT, encoding="utf-8")
    document = json.loads(CONFIG.read_text(encoding="utf-8"))
    document["Pipeline"]["stagers_conf"][0].update(module="counted", **{"class": "CountedImages"}, nb_process=1)
    config = tmp_path / "counted.json"
    config.write_text(json.dumps(document), encoding="utf-8")
    result = run(["-m", "pipeline", f"--config={config}", "--EventSource.max_events=10",
                  f"--CountedImages.start={start}", "--WriteParameters.output_path=out.h5", "--no-progress"], tmp_path)
    assert result.returncode == status, result.stderr
    assert (tmp_path / "inits.txt").read_text(encoding="utf-8") == "init\n"


@pytest.mark.timeout(RUN_SECONDS)
@pytest.mark.parametrize("options", [
    pytest.param(["--ImageModifier.psf_smear_factor=[('id', 1, 0.1)]"], id="modifier-off"),
    pytest.param(["--ImageModifier.psf_smear_factor=[('id', 1, 0.1)]",
                  "--ImageProcessor.apply_image_modifier=[('type', '*', False), ('id', 1, True)]"],
                 id="modifier-of-one-telescope"),
    pytest.param(["--CameraCalibrator.image_extractor_type=[('type', '*', 'NeighborPeakWindowSum'), "
                  "('id', 2, 'LocalPeakWindowSum')]", "--LocalPeakWindowSum.window_width=[('id', 2, 5)]"],
                 id="extractor-of-one-telescope"),
])
def test_the_options_of_a_component_some_telescopes_use_need_values_for_those_only(options: list[str],
                                                                                  tmp_path: Path) -> None:
    """An image modifier that is off, or on for one telescope, an extractor chosen for one telescope: ctapipe looks
    their options up for the telescopes that use them, and so does check() (it refused these valid configs, exit 2)."""
    pytest.importorskip("ctapipe")
    result = run(["-m", "pipeline", f"--config={CONFIG}", "--EventSource.max_events=10", "--Pipeline.mode=sequential",
                  *options, "--WriteParameters.output_path=out.h5"], tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.timeout(2 * RUN_SECONDS)
@pytest.mark.parametrize(
    ("option", "expected"),
    [
        # the line names the command line that gave the input (it named the config file's producer_conf)
        pytest.param("--EventInput.input_url=missing.simtel.zst",
                     "command line: --EventInput.input_url: step 'READER': EventInput.input_url 'missing.simtel.zst': "
                     "ctapipe's EventSource: input_url ", id="missing-file"),
        pytest.param("--EventInput.input_url=notes.txt",
                     "command line: --EventInput.input_url: step 'READER': EventInput.input_url 'notes.txt': "
                     "ctapipe's EventSource: Could not find compatible EventSource for input_url",
                     id="unreadable-file"),
        pytest.param("--ReadEvents.input_url=notes.txt",
                     "command line: --ReadEvents.input_url: step 'READER': ReadEvents.input_url 'notes.txt': ",
                     id="unreadable-file-steps-section"),
        # ctapipe's own way to name the input (ctapipe-process --input): it was taken, and toy events read instead
        pytest.param("--EventSource.input_url=missing.simtel.zst",
                     "command line: --EventSource.input_url: step 'READER': EventSource.input_url "
                     "'missing.simtel.zst': ctapipe's EventSource: input_url ", id="missing-file-ctapipes-option"),
        pytest.param("--EventSource.input_url=notes.txt",
                     "command line: --EventSource.input_url: step 'READER': EventSource.input_url 'notes.txt': "
                     "ctapipe's EventSource: Could not find compatible EventSource for input_url",
                     id="unreadable-file-ctapipes-option"),
        # the option of one of EventSource's subclasses, which --help-all lists: ignored, and toy events read (exit 0)
        pytest.param("--SimTelEventSource.input_url=/nonexistent/gamma.simtel.zst",
                     "command line: --SimTelEventSource.input_url: step 'READER': SimTelEventSource.input_url is not "
                     "read: the steps give ctapipe's EventSource its input themselves (expected EventInput.input_url "
                     "or EventSource.input_url)", id="input-of-a-sources-subclass"),
        pytest.param("--HDF5EventSource.input_url=notes.txt", "--HDF5EventSource.input_url: step 'READER': "
                     "HDF5EventSource.input_url is not read: ", id="input-of-the-hdf5-source"),
        pytest.param("--ToyEventSource.input_url=notes.txt", "--ToyEventSource.input_url: step 'READER': "
                     "ToyEventSource.input_url is not read: ", id="input-of-the-toy-source"),
        # the input of one step alone: the reader's events had telescopes the image processing did not know (KeyError)
        pytest.param("--ReadEvents.toy_telescopes=6",
                     "command line: --ReadEvents.toy_telescopes: step 'IMAGES': ReadEvents.toy_telescopes 6 is not "
                     "what ProcessImages reads (4): the steps read one input (expected EventInput.toy_telescopes, "
                     "which sets it for all of them)", id="input-of-one-step"),
        pytest.param("--ProcessImages.input_url=notes.txt",
                     "command line: --ProcessImages.input_url: step 'READER': ProcessImages.input_url 'notes.txt' is "
                     "not what ReadEvents reads (''): the steps read one input (expected EventInput.input_url, ",
                     id="input-url-of-one-step"),
        # ctapipe's Path trait downloads a URL as it validates it: requests' ConnectionError was ~60 lines, exit 1
        pytest.param("--EventSource.input_url=http://127.0.0.1:9/gamma.simtel.zst",
                     "command line: --EventSource.input_url: expected a pathlib.Path or non-empty str for a directory "
                     "or file or None, got str 'http://127.0.0.1:9/gamma.simtel.zst' (ConnectionError: ",
                     id="input-url-not-downloaded"),
        pytest.param("--TailcutsImageCleaner.picture_threshold=3",
                     "command line: --TailcutsImageCleaner.picture_threshold: TailcutsImageCleaner has no option "
                     "'picture_threshold' (ctapipe.image.cleaning.TailcutsImageCleaner, of step IMAGES) "
                     "(did you mean 'picture_threshold_pe'?)", id="unknown-option"),
        pytest.param("--CameraCalibrator.image_extractor_type=NeighbourPeakWindowSum",
                     "'NeighbourPeakWindowSum' is none of FullWaveformSum, ", id="component-name-per-telescope"),
        pytest.param("--CameraCalibrator.image_extractor_type=NeighbourPeakWindowSum",
                     "(did you mean 'NeighborPeakWindowSum'?)", id="component-name-nearest"),
        # ctapipe's own class, which the steps' module loads but no step builds: it said "did you mean 'TableWriter'?"
        pytest.param("--DataWriter.overwrite=True",
                     "command line: --DataWriter: unknown class: ctapipe.io.datawriter.DataWriter is in no step's "
                     "child_classes (expected the class in the child_classes of the step that builds it)",
                     id="class-no-step-lists"),
        pytest.param("--ImageProcessor.image_cleaner_type=Tailcuts",
                     "command line: --ImageProcessor.image_cleaner_type: expected Any of ['TailcutsImageCleaner'",
                     id="bad-value"),
        pytest.param("--ImageQualityQuery.quality_criteria=[('size', 'image.sum( > 0')]",
                     "Pipeline.stagers_conf[0]: step 'IMAGES': ctapipe's ImageProcessor: Error compiling expression",
                     id="refused-when-built"),
        # a bad part of a pattern, named (it said only "expected a TelescopePatternList, got list [...]")
        pytest.param("--TailcutsImageCleaner.picture_threshold_pe=[('type', '*', 'ten')]",
                     "command line: --TailcutsImageCleaner.picture_threshold_pe: expected a TelescopePatternList, got "
                     "list [('type', '*', 'ten')]: 'ten' is not a float (", id="telescope-pattern-bad-value"),
        pytest.param("--TailcutsImageCleaner.picture_threshold_pe=[('tipe', '*', 10.0)]",
                     "got list [('tipe', '*', 10.0)]: command must be one of: 'type', 'id' (",
                     id="telescope-pattern-bad-command"),
        pytest.param("--TailcutsImageCleaner.picture_threshold_pe=[3]",  # a TypeError's traceback, exit 1
                     "command line: --TailcutsImageCleaner.picture_threshold_pe: expected a TelescopePatternList, got "
                     "list [3] (", id="telescope-pattern-not-a-pattern"),
        # per-telescope options that leave a telescope without a value: each event failed with a KeyError (exit 1)
        pytest.param("--TailcutsImageCleaner.picture_threshold_pe=[('id', 99, 8.0)]",
                     "step 'IMAGES': ctapipe's TailcutsImageCleaner.picture_threshold_pe: [('id', 99, 8.0)] gives no "
                     "value for telescopes 1-4 (ids 1-4, types MST_ToyMST_ToyCam): expected a pattern for each",
                     id="telescope-pattern-absent-id"),
        pytest.param("--TailcutsImageCleaner.picture_threshold_pe=[('id', '1', 8.0)]",
                     "ctapipe's TailcutsImageCleaner.picture_threshold_pe: [('id', 1, 8.0)] gives no value for "
                     "telescopes 2-4 ", id="telescope-pattern-some-ids"),
        pytest.param("--CameraCalibrator.image_extractor_type=[('id', 2, 'LocalPeakWindowSum')]",
                     "ctapipe's CameraCalibrator.image_extractor_type: [('id', 2, 'LocalPeakWindowSum')] gives no "
                     "value for telescopes 1, 3-4 ", id="telescope-pattern-component-name"),
        pytest.param("--ToyEventSource.trigger_probability=[('id', 1, 0.5)]",
                     "command line: --ToyEventSource.trigger_probability: step 'READER': ctapipe's "
                     "ToyEventSource.trigger_probability: "
                     "[('id', 1, 0.5)] gives no value for telescopes 2-4 ", id="telescope-pattern-of-the-source"),
        # a criterion naming what ImageProcessor does not give it: each image failed (exit 1)
        pytest.param("--ImageQualityQuery.quality_criteria=[('a', 'nosuchvar > 0')]",
                     "command line: --ImageQualityQuery.quality_criteria: step 'IMAGES': ctapipe's "
                     "ImageQualityQuery.quality_criteria 'a': 'nosuchvar > 0' fails on an image (NameError: name "
                     "'nosuchvar' is not defined): expected an expression of image",
                     id="quality-criterion-unknown-name"),
    ],
)
def test_a_ctapipe_error_is_one_line_before_anything_runs(option: str, expected: str, tmp_path: Path) -> None:
    """Exit 2, one line naming the step and ctapipe's class, and no output file: nothing ran."""
    pytest.importorskip("ctapipe")
    (tmp_path / "notes.txt").write_text("not events\n", encoding="utf-8")
    result = run(["-m", "pipeline", f"--config={CONFIG}", option, "--WriteParameters.output_path=out.h5"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("pipeline-run: error: "), result.stderr
    assert expected in result.stderr
    # ctapipe's heading of an empty list ("... could not be used due to missing dependencies:") read as cut short
    assert not result.stderr.rstrip().endswith(":"), result.stderr
    assert not (tmp_path / "out.h5").exists()


#: Writes a ctapipe DL1 file (DataWriter's) of the toy source's first 5 events, with their images: an input that
#: ctapipe's HDF5EventSource reads.
DL1_MAKER = """
import sys
import astropy.time, numpy as np
from traitlets.config import Config
from ctapipe.core import Provenance
from ctapipe.io import DataWriter
from ctapipe.containers import ObservationBlockContainer, SchedulingBlockContainer, TriggerContainer
from algorithms.ctapipe_steps import ReadEvents, ImageProcessor, complete_toy_event
reader = ReadEvents(config=Config({"EventSource": {"max_events": 5}}))
Provenance().start_activity("dl1")
class Source:
    pass
with reader.open_source() as source:
    described = Source()  # what DataWriter reads of a source: the toy source's observation blocks fail it
    described.subarray, described.is_simulation, described.obs_ids = source.subarray, False, [1]
    described.scheduling_blocks = {1: SchedulingBlockContainer(sb_id=np.uint64(1))}
    described.observation_blocks = {1: ObservationBlockContainer(obs_id=np.uint64(1), sb_id=np.uint64(1))}
    described.simulation_config = described.atmosphere_density_profile = None
    process = ImageProcessor(source.subarray, parent=reader)
    with DataWriter(event_source=described, output_path=sys.argv[1], write_dl1_images=True) as writer:
        for event in source:
            complete_toy_event(event)
            event.index.obs_id = 1
            event.trigger = TriggerContainer(tels_with_trigger=list(event.dl1.tel), time=astropy.time.Time.now())
            process(event)
            writer(event)
"""


@pytest.fixture(scope="module")
def dl1_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ctapipe DL1 file of 5 toy events (DL1_MAKER), to read as the run's input."""
    pytest.importorskip("ctapipe")
    directory = tmp_path_factory.mktemp("dl1")
    result = run(["-c", DL1_MAKER, "input.dl1.h5"], directory)
    assert result.returncode == 0, result.stderr
    return directory / "input.dl1.h5"


def input_in_section(directory: Path, input_url: str) -> Path:
    """The example as shipped (its steps in worker processes), its input named by ctapipe's EventSource section."""
    document = json.loads(CONFIG.read_text(encoding="utf-8"))
    document["EventSource"]["input_url"] = input_url
    path = directory / "input.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.timeout(RUN_SECONDS)
@pytest.mark.parametrize("where", ["sequential", "threads", "file-section"])
def test_an_output_that_is_the_input_ctapipes_option_names_is_refused_and_the_input_kept(
    where: str, tmp_path: Path, dl1_file: Path
) -> None:
    """The input named by ctapipe's EventSource.input_url, given as the output too: the writer emptied it as the
    run started (exit 1, two tracebacks), or in worker processes the run failed with a false "in use by another run"
    of its own worker. Now one line naming the output's option, exit 2, and the input as it was (as EventInput.input_url
    was)."""
    events = tmp_path / "events.h5"
    events.write_bytes(dl1_file.read_bytes())
    option = f"--EventSource.input_url={events}"
    config, options = {"sequential": (CONFIG, [option, "--Pipeline.mode=sequential"]),
                       "threads": (threads_config(tmp_path), [option]),
                       "file-section": (input_in_section(tmp_path, str(events)), [])}[where]
    result = run(["-m", "pipeline", f"--config={config}", *options, f"--WriteParameters.output_path={events}",
                  "--no-progress"], tmp_path)
    assert (result.returncode, result.stderr.splitlines()[-1:]) == (2, [
        f"pipeline-run: error: command line: --WriteParameters.output_path: {shown(str(events))} is also step READER's "
        "input (expected a file that nothing else of the run writes or reads)"]), result.stderr
    assert events.read_bytes() == dl1_file.read_bytes()


@pytest.mark.timeout(RUN_SECONDS)
def test_ctapipes_own_loop_refuses_an_output_that_is_its_input_and_keeps_it(tmp_path: Path, dl1_file: Path) -> None:
    """algorithms.ctapipe_loop, given its input as its output, emptied it too: now one line, exit 2."""
    events = tmp_path / "events.h5"
    events.write_bytes(dl1_file.read_bytes())
    result = run(["-m", "algorithms.ctapipe_loop", str(CONFIG), f"--EventSource.input_url={events}",
                  f"--WriteParameters.output_path={events}"], tmp_path)
    assert (result.returncode, result.stderr.splitlines()[-1:]) == (2, [
        f"ctapipe_loop: error: command line: --WriteParameters.output_path: {shown(str(events))} is also step "
        "READER's input (expected a file that nothing else of the run writes or reads)"]), result.stderr
    assert events.read_bytes() == dl1_file.read_bytes()


#: A process that writes an HDF5 file as a run's writer does (HDF5 locks it) until its stdin closes.
HDF5_HOLDER = """
import sys, tables
with tables.open_file(sys.argv[1], "w") as h5:
    h5.create_array("/", "rows", list(range(1000)))
    h5.flush()
    print("ready", flush=True)
    sys.stdin.read()
"""


@pytest.mark.timeout(RUN_SECONDS)
def test_an_output_file_another_run_writes_is_refused_in_one_line_and_kept(tmp_path: Path) -> None:
    """HDF5 emptied the other run's file before it found the lock, then printed ~90 lines of its stack and a
    traceback (exit 1): now one line naming the option and the holder, exit 2, and the file as it was."""
    pytest.importorskip("ctapipe")
    output = tmp_path / "out.h5"
    with subprocess.Popen([sys.executable, "-c", HDF5_HOLDER, str(output)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout.readline() == "ready\n"
            kept = output.read_bytes()
            result = run(["-m", "pipeline", f"--config={CONFIG}", f"--WriteParameters.output_path={output}"], tmp_path)
            assert output.read_bytes() == kept  # while it is open: its writer marks it closed on closing
        finally:
            holder.stdin.close()
            assert holder.wait(timeout=RUN_SECONDS) == 0
    assert (result.returncode, result.stderr.splitlines()[-1:]) == (2, [
        f"pipeline-run: error: command line: --WriteParameters.output_path: step 'WRITER': "
        f"WriteParameters.output_path {str(output)!r} is in use by another run (pid {holder.pid}) (expected an "
        "output file of its own for each run)"]), result.stderr
    assert "HDF5-DIAG" not in result.stderr


@pytest.mark.timeout(RUN_SECONDS)
def test_a_telescope_type_pattern_matching_no_telescope_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    """A type pattern in the config file that matches none of the subarray's types: exit 2 and the error as the last
    line (ctapipe's own warning on the pattern may come before it), where every event failed with a KeyError."""
    pytest.importorskip("ctapipe")
    document = json.loads(CONFIG.read_text(encoding="utf-8"))
    document["ImageProcessor"]["TailcutsImageCleaner"]["picture_threshold_pe"] = [["type", "LST_*", 8.0]]
    config = tmp_path / "lst.json"
    config.write_text(json.dumps(document), encoding="utf-8")
    result = run(["-m", "pipeline", f"--config={config}", "--WriteParameters.output_path=out.h5"], tmp_path)
    assert result.returncode == 2, result.stderr
    *before, last = result.stderr.splitlines()
    assert last == (f"pipeline-run: error: {config}: Pipeline.stagers_conf[0]: step 'IMAGES': ctapipe's "
                    "TailcutsImageCleaner.picture_threshold_pe: [('type', 'LST_*', 8.0)] gives no value for telescopes "
                    "1-4 (ids 1-4, types MST_ToyMST_ToyCam): expected a pattern for each, e.g. ('type', '*', value) "
                    "first"), result.stderr
    assert all("'LST_*' did not match any known telescope types" in line for line in before), result.stderr
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.timeout(2 * RUN_SECONDS)
def test_runs_started_together_on_one_hdf5_output_leave_it_to_one(tmp_path: Path,
                                                                   loop_output: dict[str, Any]) -> None:
    """HDF5 empties a file before it finds another's lock, and each run only probed for one: of runs started together
    on one output, each passed the probe, and losers emptied the winner's file. The run's process claims it before any
    step runs (a record lock, which HDF5's own flock does not meet): one run writes it (its writer held before it opens
    the file until the others ended), each other exits 2 in one line, and the file holds the winner's rows."""
    output, gate = tmp_path / "out.h5", tmp_path / "gate"
    document = json.loads(CONFIG.read_text(encoding="utf-8"))
    document["Pipeline"]["consumer_conf"].update(module="tests.held_writer", **{"class": "HeldWriter"})
    document["HeldWriter"] = {"gate": str(gate)}
    config = tmp_path / "held.json"
    config.write_text(json.dumps(document), encoding="utf-8")
    command = [sys.executable, "-m", "pipeline", f"--config={config}", f"--EventSource.max_events={EVENTS}",
               f"--WriteParameters.output_path={output}", "--no-progress"]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    runs = [subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        wait_for(lambda: sum(each.poll() is not None for each in runs) == 2, RUN_SECONDS, "two runs refused")
    finally:
        gate.touch()  # the winner goes on
        errors = [each.communicate(timeout=RUN_SECONDS)[1] for each in runs]
    assert sorted(each.returncode for each in runs) == [0, 2, 2], errors
    refusal = (f"pipeline-run: error: {config}: Pipeline.consumer_conf: step 'WRITER': HeldWriter.output_path "
               f"{str(output)!r} is in use by another run (expected an output file of its own for each run)")
    assert [error.splitlines()[-1:] for each, error in zip(runs, errors, strict=True) if each.returncode == 2] == [
        [refusal]] * 2, errors
    assert {name: len(rows) for name, rows in tables(output).items()} == {
        name: len(rows) for name, rows in loop_output.items()}
