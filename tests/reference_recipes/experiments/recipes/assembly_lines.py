# "Migration from Old experiment() Pattern" of the reference, unchanged but for the import line;
# `curriculum_args` is the module-level table the reference's recipe module defines elsewhere.
from metta_exp import ExperimentTool

curriculum_args = {"easy": {"levels": 4}, "hard": {"levels": 12}}

def experiment() -> ExperimentTool:
    runs = [f"assembly_lines_{style}" for style in curriculum_args.keys()]
    return ExperimentTool(
        module="assembly_lines.train",
        runs=runs,
        args_per_run={
            f"assembly_lines_{style}": [f"curriculum_style={style}"]
            for style in curriculum_args.keys()
        },
        gpus=4,
        generate_notebook=True,
    )
