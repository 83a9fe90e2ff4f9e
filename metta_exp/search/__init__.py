"""Searches (adaptive sweeps): an Optuna study driven by the group's runner.

A sweep with an ``interval(...)`` dimension is a search (:mod:`metta_exp.sweep.space` parses it). Its
group starts with the first ``search.parallel`` trials' jobs; from then on its runner
(:class:`~metta_exp.search.driver.SearchDriver`) tells each trial's outcome when its job ends, prunes
trials that fall behind (:mod:`metta_exp.search.curve` reads their objective from their progress lines)
and asks new trials while slots are free, until ``search.n_trials`` have been told. The study lives in
the store (:mod:`metta_exp.trials`, the ``trials`` table) and in memory only as a replay of it
(:mod:`metta_exp.search.study`, the one module that imports Optuna).
"""
