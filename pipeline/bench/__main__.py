"""``python -m pipeline.bench``: the ``pipeline-bench`` command."""

from pipeline.bench.app import main

if __name__ == "__main__":
    main()
