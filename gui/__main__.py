"""``python -m gui``: the ``pipeline-gui`` command."""

from .app import main

if __name__ == "__main__":
    main()
