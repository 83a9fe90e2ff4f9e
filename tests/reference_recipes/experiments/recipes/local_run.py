# "Advanced Usage: Local vs Remote Execution" of the reference, unchanged but for the import line.
from metta_exp import ExperimentTool

def experiment() -> ExperimentTool:
    return ExperimentTool(
        module="arena.train",
        runs=["test_run"],
        remote=False,  # Run locally instead of via SkyPilot
    )
