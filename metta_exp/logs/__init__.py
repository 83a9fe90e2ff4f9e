"""A job's log: the lines metta-exp reads in it (lines: progress, checkpoint, W&B) and reading it (tail)."""
