"""``python -m gui``: the ``pipeline-gui`` command."""

from pipeline.cli.launch import pipeline_gui

if __name__ == "__main__":
    pipeline_gui()
