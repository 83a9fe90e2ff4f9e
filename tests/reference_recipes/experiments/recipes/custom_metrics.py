# "Advanced Usage: Custom Metrics Tracking" of the reference, unchanged but for the import line.
from metta_exp import ExperimentTool

def experiment() -> ExperimentTool:
    return ExperimentTool(
        module="arena.train",
        runs=["run1", "run2"],
        metrics_to_track=[
            "overview/sps",
            "overview/reward",
            "trainer/loss",
            "trainer/entropy",
        ],
    )
