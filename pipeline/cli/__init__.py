"""The command-line programs: pipeline-run, pipeline-worker and pipeline-keys, and what they share."""
