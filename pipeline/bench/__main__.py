"""``python -m pipeline.bench``: the ``pipeline-bench`` command."""

from .app import main

if __name__ == "__main__":
    main()
