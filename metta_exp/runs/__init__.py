"""What a job's run reports, read in one place: its ``run.json`` (:mod:`metta_exp.runs.state`, with the one
rule for which attempt wrote it) and its W&B identity (:mod:`metta_exp.runs.wandb`: mode, run id, URL,
API path). The files themselves are named by :class:`metta_exp.paths.RunDir`; the training side that
writes them is :mod:`metta_exp.tracking`. Light: the standard library only."""
