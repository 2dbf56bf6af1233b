"""Deployments: a new model version reaches an endpoint by canary, blue-green or shadow.

:mod:`~gyre.deploy.rollout` starts, advances, promotes and rolls back deployments (each step
an event and an audit record); :mod:`~gyre.deploy.analysis` judges a step from the prediction
log and the feedback; :mod:`~gyre.deploy.records` is the ``deployments`` table. Servers follow
the running deployments through :func:`~gyre.deploy.rollout.traffic`.
"""
