"""Issue #12, the webhook address filter: every special-purpose address, IPv6 transition forms of loopback included,
is refused when a webhook is created (live hub, SQLite and PostgreSQL), and a delivery connects to the address it
checked: the name is resolved once, so rebinding it to 127.0.0.1 after the check reaches nothing. The resolver is
a parameter of :mod:`openckpt.hub.services.webhooks.netguard`, which is how the unit tests here rebind a name."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from openckpt.hub.services.webhooks import netguard
from tests.hub.test_webhooks import Receiver
from tests.hubtools import HubProcess, Postgres, start_hub

LOOPBACK_IN_DISGUISE = ["::127.0.0.1", "2002:7f00:1::", "64:ff9b::7f00:1", "fec0::1", "::ffff:127.0.0.1", "::1"]
NOT_PUBLIC = [
    *LOOPBACK_IN_DISGUISE,
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",
    "172.16.0.1",
    "192.0.0.8",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.0.1",
    "198.18.0.1",
    "198.51.100.1",
    "203.0.113.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::a00:1",
    "100::1",
    "2001::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "2001:2::1",
    "2001:10::1",
    "2001:db8::1",
    "2002:a00:1::1",
    "2002:c0a8:1::1",
    "3fff::1",
    "5f00::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "4000::1",
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2a00:1450::1",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


def _url(address: str, path: str = "/hook") -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}{path}"


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_special_purpose_addresses_are_not_public(address: str) -> None:
    assert netguard.special_purpose(ipaddress.ip_address(address)) is not None
    assert netguard.local_target(_url(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are(address: str) -> None:
    assert netguard.special_purpose(ipaddress.ip_address(address)) is None
    assert netguard.local_target(_url(address)) is None  # address literals: no lookup


@pytest.mark.parametrize("host", ["0x7f.1", "2130706433", "127.1", "localhost"])
def test_other_spellings_of_loopback_resolve_to_it(host: str) -> None:
    assert netguard.local_target(f"http://{host}:8080/x") is not None


def test_an_address_httpx_cannot_parse_is_never_sent_to() -> None:
    seen: list[httpx.Request] = []
    with httpx.Client(transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(204))) as client:
        for url in ("http://0177.0.0.1/x", "http://[::1/x", "ftp://127.0.0.1/x"):
            with pytest.raises(httpx.InvalidURL):
                netguard.post(client, url, content=b"{}", headers={})
    assert seen == []


class Rebinding:
    """A resolver answering ``first`` on the first lookup of a name and ``then`` on every later one."""

    def __init__(self, first: list[str], then: list[str]) -> None:
        self.first, self.then, self.lookups = first, then, 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups += 1
        return self.first if self.lookups == 1 else self.then


def test_a_name_rebound_to_loopback_after_the_check_is_not_looked_up_again() -> None:
    seen: list[httpx.Request] = []
    resolver = Rebinding(["93.184.216.34"], ["127.0.0.1"])
    with httpx.Client(transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(204))) as client:
        response = netguard.post(
            client,
            "https://hooks.example.com:8443/in?x=1",
            content=b"{}",
            headers={"content-type": "application/json"},
            resolver=resolver,
        )
    assert response.status_code == 204 and resolver.lookups == 1
    (request,) = seen
    assert str(request.url) == "https://93.184.216.34:8443/in?x=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"  # TLS verifies the name, not the address


@pytest.mark.parametrize("answer", [["127.0.0.1"], ["93.184.216.34", "127.0.0.1"], ["2002:7f00:1::"], []])
def test_a_name_with_any_local_address_is_not_sent_to(answer: list[str]) -> None:
    seen: list[httpx.Request] = []
    resolver = Rebinding(answer, ["93.184.216.34"])
    refused = pytest.raises(netguard.NotPublicError if answer else httpx.ConnectError)
    with (
        httpx.Client(transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(204))) as client,
        refused,
    ):
        netguard.post(client, "http://hooks.example.com/in", content=b"{}", headers={}, resolver=resolver)
    assert seen == [] and resolver.lookups == 1


def test_a_delivery_reaches_the_address_that_was_checked() -> None:
    """A real receiver on 127.0.0.1 (local addresses allowed): the one lookup's answer is where the POST goes, with
    the URL's name as Host, though the name resolves elsewhere (nowhere) ever after."""
    receiver = Receiver()
    try:
        port = receiver.server.server_address[1]
        resolver = Rebinding(["127.0.0.1"], ["10.255.255.1"])
        with httpx.Client(timeout=10) as client:
            response = netguard.post(
                client,
                f"http://hooks.test:{port}/in",
                content=b'{"a": 1}',
                headers={},
                allow_local=True,
                resolver=resolver,
            )
        assert response.status_code == 200 and resolver.lookups == 1
        (got,) = receiver.requests
        assert (got.path, got.headers["host"], got.body) == ("/in", f"hooks.test:{port}", {"a": 1})
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


# -- a live hub -----------------------------------------------------------------------------------------------------

HOOK_URLS = [_url(a) for a in NOT_PUBLIC] + ["http://0x7f.1/x", "http://2130706433/x", "http://localhost:9/x"]


def test_creating_or_pointing_a_webhook_at_any_of_them_is_a_400(hub: HubProcess) -> None:
    api = HfApi(endpoint=hub.url, token=hub.token)
    repo = api.create_repo(f"hooks-{uuid.uuid4().hex[:8]}").repo_id
    watched = [{"type": "model", "name": repo}]
    refused = []
    for url in HOOK_URLS:
        with pytest.raises(HfHubHTTPError) as error:
            api.create_webhook(url=url, watched=watched)
        response = error.value.response
        assert response is not None and response.status_code == 400, (url, response)
        assert response.headers["x-error-code"] == "BadRequest"
        assert "OPENCKPT_WEBHOOKS_ALLOW_LOCAL" in response.json()["error"]
        refused.append(url)
    assert refused == HOOK_URLS
    public = api.create_webhook(url="http://93.184.216.34/hook", watched=watched)  # a literal: nothing resolves it
    for url in ("http://[::127.0.0.1]/hook", "http://[64:ff9b::7f00:1]/hook"):
        with pytest.raises(HfHubHTTPError) as error:
            api.update_webhook(public.id, url=url, watched=watched)
        assert error.value.response is not None and error.value.response.status_code == 400
    api.delete_webhook(public.id)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def local_hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub whose webhooks may reach 127.0.0.1 (``OPENCKPT_WEBHOOKS_ALLOW_LOCAL=1``), as the receivers are there."""
    url = ""
    if request.param == "postgresql":
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"hub_{uuid.uuid4().hex[:8]}")
    server = start_hub(tmp_path_factory.mktemp("hub") / "data", url, env={"OPENCKPT_WEBHOOKS_ALLOW_LOCAL": "1"})
    yield server
    server.stop()


def test_a_webhook_to_a_name_is_delivered_to_its_checked_address(local_hub: HubProcess) -> None:
    """``localhost`` may resolve to ``::1`` first, where nothing listens: the hub tries the next checked address
    and the request carries the name it was given."""
    receiver = Receiver()
    try:
        port = receiver.server.server_address[1]
        api = HfApi(endpoint=local_hub.url, token=local_hub.token)
        repo = api.create_repo(f"hooks-{uuid.uuid4().hex[:8]}").repo_id
        api.create_webhook(url=f"http://localhost:{port}/by-name", watched=[{"type": "model", "name": repo}])
        commit = api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=repo)
        (got,) = receiver.wait_for(lambda r: r.body["repo"].get("headSha") == commit.oid)
        assert (got.path, got.headers["host"]) == ("/by-name", f"localhost:{port}")
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
