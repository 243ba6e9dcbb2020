"""The parts of a run's tab: graph view, step table, throughput plot, error panel and status bar."""
