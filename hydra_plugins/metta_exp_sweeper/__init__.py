"""metta-exp's Hydra sweeper: ``python my_app.py -m hydra/sweeper=metta_exp``, a drop-in for Hydra's Optuna
sweeper configuration whose study is ONE metta-exp search group, driven by the group's runner (detached,
crash-safe, on any backend). Hydra imports every module of this package when it looks for plugins, so
they stay thin: the work is in ``_core``, which plugin discovery skips.
"""
