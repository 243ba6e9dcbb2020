"""``python -m pipeline``: the ``pipeline-run`` command."""

from pipeline.cli.launch import pipeline_run

if __name__ == "__main__":
    pipeline_run()
