"""What a command writes for people: a stderr that never blocks a run, the end of output, words and numbers."""
