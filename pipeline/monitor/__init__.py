"""Live monitoring of a run: the JSON status stream to a GUI, progress on the terminal, graph export.

- ``messages``: the wire format (docs/protocol.md) and its JSON Schema, ``protocol.schema.json``;
- ``publisher``: the non-blocking socket that connects to the GUI's address;
- ``progress``: progress log lines when stderr is not a terminal (or a dumb one), and the choice of display;
- ``terminal``: the live terminal display (rich, imported only when stderr is a terminal);
- ``workers``: where a step's workers run (``2p+1r``) and their heartbeats, as every display says it;
- ``monitor``: the thread that watches a run and feeds the stream and the display;
- ``graph_export``: a pipeline's graph as Mermaid or DOT.

The final summary table is ``RunReport.table()`` (pipeline/report.py).
"""

from pipeline.monitor.graph_export import GRAPH_FORMATS, render_graph
from pipeline.monitor.monitor import Monitor, MonitorSettings
from pipeline.monitor.publisher import Address

__all__ = ["GRAPH_FORMATS", "Address", "Monitor", "MonitorSettings", "render_graph"]
