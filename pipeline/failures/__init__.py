"""Failed messages and steps: how they are told, counted, logged, written as dead letters and replayed."""
