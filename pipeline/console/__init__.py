"""What a command writes for people: a stderr that never blocks a run, the end of output, words and numbers; and
the signal handlers a run lends its process, which a child it forks gives back."""
