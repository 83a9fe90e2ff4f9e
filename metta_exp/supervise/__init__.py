"""Supervision: who drives a group, whether that driver lives, and how a group ended.

One runner process drives a group at a time; it holds the group's lease in the store. ``lease`` is the
readers' side (does the holder live? which groups does nobody drive?), light enough for ``job list``;
``drive`` starts runners, takes and keeps the lease, and heals. The runner, the monitor, ``job`` commands
and log following import these; they import nothing above the store, so none of them has to import the
runner.
"""
