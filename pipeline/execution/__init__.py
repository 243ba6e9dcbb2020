"""How a step's code runs and how a run reports: the executor, the runners' interface, sequential mode."""
