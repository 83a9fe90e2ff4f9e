# "Advanced Usage: Custom Per-Run Arguments" of the reference, unchanged but for the import line.
from metta_exp import ExperimentTool

def experiment() -> ExperimentTool:
    return ExperimentTool(
        module="arena.train",
        runs=["baseline", "high_lr", "low_entropy"],
        args_per_run={
            "baseline": [],
            "high_lr": ["trainer.learning_rate=0.001"],
            "low_entropy": ["trainer.entropy_coef=0.001"],
        },
        group="custom_args_experiment",
    )
