"""``python -m pipeline``: the ``pipeline-run`` command."""

from pipeline.cli.run import main

if __name__ == "__main__":
    main()
