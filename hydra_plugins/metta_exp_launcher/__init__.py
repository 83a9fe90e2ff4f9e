"""metta-exp's Hydra launcher: ``python my_train.py -m hydra/launcher=metta_exp lr=1e-3,1e-4``.

Every job of the sweep becomes a run of ONE metta-exp job group (local or SkyPilot), submitted at once
and tracked like any group (``metta-exp job monitor GROUP``). Hydra imports every module of this package
when it looks for plugins, so they stay thin: the work is in ``_core``, which plugin discovery skips.
"""
