"""The training loop, learning-rate schedules, evaluation and checkpoints."""
