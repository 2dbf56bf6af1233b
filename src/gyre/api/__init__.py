"""The control-plane HTTP API: the SDK's operations over HTTP under ``/api/v1``.

Each resource is one route module (``routes/``) that parses a request, calls the same service
function the local SDK calls (:mod:`gyre.tracking.service`, :mod:`gyre.models.registry`) and
serializes the answer; :mod:`gyre.api.app` assembles them with auth, limits and error
mapping, and :mod:`gyre.api.server` runs the app under uvicorn. The matching client is
:class:`gyre.client.http.HttpBackend`.
"""
