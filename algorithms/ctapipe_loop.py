"""The work of a config of algorithms.ctapipe_steps (configs/ctapipe_toy.json) as ctapipe's own
loop in one process, to compare with the pipeline: same events, same components, same options.

    python -m algorithms.ctapipe_loop configs/ctapipe_toy.json [--Class.trait=value ...]

It reads the top-level class sections of the config (not the sections nested in a step's, nor a
step's ``config`` key), the command line's winning over the sections nested in them as in the pipeline's
steps, writes the same HDF5 file, and prints its rate to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from traitlets.config.loader import KVArgParseConfigLoader

from algorithms.ctapipe_steps import plain_loop
from pipeline import ConfigError, Pipeline
from pipeline.config.loader import load_config
from pipeline.config.outputs import check_written_files


def main(argv: Sequence[str] | None = None) -> int:
    """Run the loop for the config named first in ``argv``; the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print("usage: python -m algorithms.ctapipe_loop CONFIG [--Class.trait=value ...]", file=sys.stderr)
        return 2
    try:
        overrides = KVArgParseConfigLoader(args[1:]).load_config()
        pipeline_config = load_config(args[0], overrides, settings=[Pipeline])
        check_written_files(pipeline_config, "", ("", ""), None)  # an output that is the input: HDF5 emptied it
        config = pipeline_config.whole_config()
    except ConfigError as err:
        print(f"ctapipe_loop: error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    events = plain_loop(config)
    elapsed = time.perf_counter() - start
    print(f"{events} events in {elapsed:.2f} s: {events / elapsed:.1f} events/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
