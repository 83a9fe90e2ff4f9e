"""History across groups: the questions a researcher asks of months of experiments in one store.

- :mod:`~metta_exp.history.filters`: statuses, times (``7d``, ``2026-12-01``), globs and ``--where``
  conditions, parsed from what a user types (pure);
- :mod:`~metta_exp.history.listing`: which groups a command means, and ``job list``'s window of the newest;
- :mod:`~metta_exp.history.runs`: every run across groups as one row (final metrics, overrides,
  GPU-hours), filtered and sorted, as a text table, JSON or CSV;
- :mod:`~metta_exp.history.remove`: what ``job rm`` removes, the disk it frees, and removing it safely;
- :mod:`~metta_exp.history.compare`: one notebook and report with several groups side by side.

The SQL lives in :mod:`metta_exp.store.history`; :mod:`metta_exp.groups` is the Python API over this
package and ``metta-exp job ...`` the commands. Nothing heavy is imported at import time.
"""

DEFAULT_LIMIT = 50
"""Groups ``job list`` shows (and runs ``job runs`` shows) unless told ``--all`` or ``-n N`` (here, not in
``listing``: the job parser and ``groups`` need it without importing the queries)."""
