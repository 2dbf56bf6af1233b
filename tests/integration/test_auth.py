"""API keys on a live server: roles on every route, rate limits with Retry-After, revocation."""

from __future__ import annotations

import time

import httpx
import pytest

from gyre.api import keys as api_keys
from gyre.api.auth import PERMISSIONS, required
from gyre.client.client import Client
from gyre.errors import InvalidArgument

pytestmark = pytest.mark.integration


def _key(client: Client, role: str, **options: object) -> str:
    meta = client.backend.meta  # type: ignore[attr-defined]
    _, key = api_keys.create_key(meta, f"{role}-key", role, **options)  # type: ignore[arg-type]
    return key


def test_roles_decide_what_each_key_may_do(client: Client, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(token="shared-secret", auth=True)
    keys = {role: _key(client, role) for role in api_keys.ROLES}

    def call(role: str | None, method: str, path: str, **kw: object) -> int:
        headers = {"Authorization": f"Bearer {keys[role]}"} if role else {}
        return httpx.request(method, f"{server.url}{path}", headers=headers, **kw).status_code  # type: ignore[arg-type]

    assert call(None, "GET", "/api/v1/experiments") == 401
    assert call(None, "GET", "/healthz") == 200  # probes stay open
    assert call("viewer", "GET", "/api/v1/experiments") == 200
    assert call("viewer", "POST", "/api/v1/experiments", json={"name": "x"}) == 403
    assert call("predictor", "GET", "/api/v1/experiments") == 403
    assert call("data-scientist", "POST", "/api/v1/experiments", json={"name": "x"}) in (200, 201)
    record = [{"id": 1}]
    assert call("predictor", "POST", "/v1/datasets/events/records", json=record) == 403
    assert call("data-scientist", "POST", "/v1/datasets/events/records", json=record) == 202
    assert call("deployer", "POST", "/v1/datasets/events/records", json=record) == 403
    assert call("admin", "GET", "/metrics") == 200
    forbidden = httpx.get(
        f"{server.url}/api/v1/experiments", headers={"Authorization": f"Bearer {keys['predictor']}"}
    )
    assert forbidden.json()["error"] == "forbidden" and "viewer" in forbidden.json()["message"]
    # The shared token acts as an admin key; a wrong one or a malformed key is refused.
    assert (
        httpx.get(
            f"{server.url}/api/v1/experiments", headers={"Authorization": "Bearer shared-secret"}
        ).status_code
        == 200
    )
    assert (
        httpx.get(f"{server.url}/api/v1/experiments", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    fake = keys["admin"][:-4] + "AAAA"
    assert httpx.get(f"{server.url}/api/v1/experiments", headers={"X-API-Key": fake}).status_code == 401


def test_rate_limit_answers_429_with_retry_after(client: Client, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(auth=True)
    key = _key(client, "viewer", rate="2/s", burst=2)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, headers=headers) as http:
        codes = [http.get("/api/v1/experiments").status_code for _ in range(3)]
        assert codes[:2] == [200, 200] and codes[2] == 429
        limited = http.get("/api/v1/experiments")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "rate limit of 2 requests/s" in limited.json()["message"]
        time.sleep(0.6)
        assert http.get("/api/v1/experiments").status_code == 200  # tokens refill


def test_prediction_routes_share_auth_and_the_rate_limit(client: Client, start_server) -> None:  # type: ignore[no-untyped-def]
    """Predictions are answered in front of the rest of the app, behind the same credentials
    and the same per-key bucket: a key cannot double its rate by mixing routes."""
    server = start_server(auth=True)
    limited = _key(client, "viewer", rate="1/s", burst=3)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {limited}"}) as http:
        codes = [http.get("/v1/endpoints").status_code, http.get("/api/v1/experiments").status_code]
        codes += [http.get("/v2/models/nothing").status_code, http.get("/api/v1/experiments").status_code]
        assert codes == [200, 200, 404, 429]
        assert http.get("/v1/endpoints").status_code == 429
    predictor = {"Authorization": f"Bearer {_key(client, 'predictor')}"}
    assert httpx.get(f"{server.url}/v1/endpoints").status_code == 401
    assert httpx.post(f"{server.url}/v1/endpoints/nothing/predict", json={"rows": []}).status_code == 401
    missing = httpx.post(f"{server.url}/v1/endpoints/nothing/predict", json={"rows": []}, headers=predictor)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert httpx.get(f"{server.url}/api/v1/experiments", headers=predictor).status_code == 403
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200  # probes stay open


def test_a_revoked_key_is_refused(client: Client, start_server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(api_keys, "KEY_CACHE_TTL_S", 0.1)
    server = start_server(auth=True)
    meta = client.backend.meta  # type: ignore[attr-defined]
    info, key = api_keys.create_key(meta, "temp", "viewer")
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{server.url}/api/v1/experiments", headers=headers).status_code == 200
    # A verified key is remembered as presented: the same id with another secret is not it.
    forged = {"Authorization": f"Bearer {key[:-1]}{'x' if key[-1] != 'x' else 'y'}"}
    assert httpx.get(f"{server.url}/api/v1/experiments", headers=forged).status_code == 401
    api_keys.revoke_key(meta, info.id)
    time.sleep(0.2)
    refused = httpx.get(f"{server.url}/api/v1/experiments", headers=headers)
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]
    assert [k.id for k in api_keys.list_keys(meta)] == []
    assert [k.id for k in api_keys.list_keys(meta, include_revoked=True)] == [info.id]


def test_permission_table_and_inputs() -> None:
    assert required("POST", "/v1/endpoints/fraud/predict") == {"predict"}
    assert required("POST", "/v2/models/fraud/infer") == {"predict"}
    assert required("GET", "/v2/models/fraud") == {"predict", "read"}
    assert required("PUT", "/api/v1/models/fraud/aliases/champion") == {"deploy"}
    assert required("DELETE", "/api/v1/keys/abc") == {"admin"}
    assert required("POST", "/api/v1/runs") == {"write"}
    assert required("GET", "/api/v1/runs") == {"read"}
    assert required("BREW", "/coffee") == {"admin"}  # anything unlisted needs admin
    assert all(needs <= set().union(*api_keys.ROLES.values()) for _, _, needs in PERMISSIONS)
    assert api_keys.parse_rate("600/m") == 10.0 and api_keys.parse_rate(None) is None
    for bad in ["0/s", "fast", "10/d"]:
        with pytest.raises(InvalidArgument):
            api_keys.parse_rate(bad)
