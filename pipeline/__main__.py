"""``python -m pipeline``: the ``pipeline-run`` command."""

from .app import main

if __name__ == "__main__":
    main()
