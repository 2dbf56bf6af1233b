"""Serving: online predictions from the registered endpoints, batched, checked and logged.

An endpoint (:class:`~gyre.serving.definition.Endpoint`, applied with ``gyre apply``) names a
model and the online features its requests need. ``gyre serve`` loads every registered
endpoint once (:mod:`gyre.serving.service`, :mod:`gyre.serving.endpoint`) and answers
predictions in three protocols (:mod:`gyre.serving.http`, :mod:`gyre.serving.protocols`):
Gyre JSON, MLflow scoring and Open Inference Protocol v2. Requests are checked against the
model's signature (:mod:`gyre.serving.inputs`), batched across concurrent callers
(:mod:`gyre.serving.batching`), and every prediction is logged durably before it is answered
(:mod:`gyre.serving.log`).
"""
