"""``python -m pipeline.bench``: the ``pipeline-bench`` command."""

from pipeline.cli.launch import pipeline_bench

if __name__ == "__main__":
    pipeline_bench()
