"""Training machinery: device and precision, EMA, checkpoints, distributed runs, progress, pretraining."""
