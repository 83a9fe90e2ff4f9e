# "Advanced Usage: Custom Notebook Path" of the reference, unchanged but for the import line.
from pathlib import Path

from metta_exp import ExperimentTool

def experiment() -> ExperimentTool:
    return ExperimentTool(
        module="arena.train",
        runs=["run1"],
        notebook_path=Path("./my_analysis/results.ipynb"),
    )
