# "Basic Usage" of the reference's experiment tools, unchanged but for the import line.
from metta_exp import ExperimentTool

def experiment(
    runs: list[str] | None = None,
    group: str | None = None,
    gpus: int = 4,
) -> ExperimentTool:
    """Launch a parallel experiment with multiple training runs."""
    if runs is None:
        runs = ["baseline", "variant"]

    return ExperimentTool(
        module="arena.train",  # Tool to run for each job
        runs=runs,             # List of run names
        args_per_run={         # Optional: per-run arguments
            "baseline": ["trainer.total_timesteps=1000000"],
            "variant": ["trainer.total_timesteps=1000000", "trainer.learning_rate=0.001"],
        },
        group=group,           # Job group name (auto-generated if None)
        gpus=gpus,             # GPUs per job
        generate_notebook=True,  # Generate analysis notebook
    )
