"""Users and organisations through the stock client: ``get_user_overview``, ``get_organization_overview`` and
``list_organization_members``. Counts hold only the repos the caller may see; memberships are public, roles only for
the organisation's members and hub admins; unknown names (and users asked as organisations, and the reverse) are
404s; ``/api/organizations/{org}/settings/repositories`` still answers beside the new routes."""

from __future__ import annotations

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.hf_api import Organization, User

from tests.hub.conftest import People
from tests.hubtools import HubProcess

# repo → (type, private); alice creates them all
REPOS = {
    "alice/open-model": ("model", False),
    "alice/secret-model": ("model", True),
    "alice/open-data": ("dataset", False),
    "alice/open-space": ("space", False),
    "lab/open-model": ("model", False),
    "lab/secret-model": ("model", True),
    "lab/secret-data": ("dataset", True),
}


@pytest.fixture(scope="module")
def world(hub: HubProcess, people: People) -> People:
    """The accounts of :class:`People`, with the repos of :data:`REPOS`."""
    alice = HfApi(endpoint=hub.url, token=people.alice)
    for repo, (kind, private) in REPOS.items():
        sdk = "static" if kind == "space" else None
        alice.create_repo(repo, repo_type=kind, private=private, space_sdk=sdk)
    return people


def _api(hub: HubProcess, token: str | None) -> HfApi:
    return HfApi(endpoint=hub.url, token=token or False)


def _counts(found: User | Organization) -> tuple[int | None, int | None, int | None]:
    return found.num_models, found.num_datasets, found.num_spaces


def test_a_users_overview_counts_only_the_repos_the_caller_may_see(hub: HubProcess, world: People) -> None:
    for token, counts in (
        (world.alice, (2, 1, 1)),
        (world.admin, (2, 1, 1)),
        (world.bob, (1, 1, 1)),
        (None, (1, 1, 1)),
    ):
        user = _api(hub, token).get_user_overview("alice")
        assert user.username == "alice" and user.fullname == "alice" and user.user_type == "user"
        assert _counts(user) == counts
        assert user.is_pro is False and user.num_likes == 0 and user.avatar_url == ""
        assert [(o.name, o.fullname) for o in user.orgs] == [("lab", "lab")]  # memberships are public
    bob = _api(hub, world.alice).get_user_overview("bob")
    assert _counts(bob) == (0, 0, 0) and bob.orgs == []
    wendy = _api(hub, None).get_user_overview("wendy")
    assert [o.name for o in wendy.orgs] == ["lab"]


def test_an_organisations_overview_counts_its_repos_and_members(hub: HubProcess, world: People) -> None:
    for token, counts in ((world.olga, (2, 1, 0)), (world.admin, (2, 1, 0)), (world.bob, (1, 0, 0)), (None, (1, 0, 0))):
        org = _api(hub, token).get_organization_overview("lab")
        assert org.name == "lab" and org.fullname == "lab" and org.avatar_url == ""
        assert _counts(org) == counts and org.num_users == 3
        assert org.is_verified is False and org.type == "org"


def test_an_organisations_members_with_roles_for_its_members_and_admins(hub: HubProcess, world: People) -> None:
    roles = {"alice": "admin", "olga": "read", "wendy": "write"}
    for token in (world.olga, world.alice, world.admin):
        found = list(_api(hub, token).list_organization_members("lab"))
        assert [(m.username, m.user_type, m.role) for m in found] == [
            (name, "user", role) for name, role in roles.items()
        ]
    for token in (world.bob, None):
        found = list(_api(hub, token).list_organization_members("lab"))
        assert [m.username for m in found] == list(roles) and not any(hasattr(m, "role") for m in found)


def test_members_are_paged_by_limit_and_link(hub: HubProcess, world: People) -> None:
    url, pages, seen = f"{hub.url}/api/organizations/lab/members?limit=2", 0, []
    while url:  # as the client's ``paginate`` follows it
        r = httpx.get(url, headers={"authorization": f"Bearer {world.wendy}"}, timeout=30)
        assert r.status_code == 200 and len(r.json()) <= 2, r.text
        seen += [(m["user"], m["role"]) for m in r.json()]
        url, pages = r.links.get("next", {}).get("url", ""), pages + 1
    assert pages == 2 and seen == [("alice", "admin"), ("olga", "read"), ("wendy", "write")]
    bad = httpx.get(f"{hub.url}/api/organizations/lab/members?limit=x", timeout=30)
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("call", "name"),
    [
        ("get_user_overview", "nobody"),
        ("get_user_overview", "lab"),  # an organisation asked as a user
        ("get_organization_overview", "nobody"),
        ("get_organization_overview", "alice"),  # a user asked as an organisation
        ("list_organization_members", "nobody"),
        ("list_organization_members", "bob"),
    ],
)
def test_unknown_names_and_kind_mismatches_are_404s(hub: HubProcess, world: People, call: str, name: str) -> None:
    with pytest.raises(HfHubHTTPError) as error:
        result = getattr(_api(hub, world.alice), call)(name)
        if call == "list_organization_members":  # a generator: the request goes out when it is read
            list(result)
    assert not isinstance(error.value, RepositoryNotFoundError)  # no repo is missing
    response = error.value.response
    assert response.status_code == 404 and response.headers["x-error-code"] == "AccountNotFound"
    assert name in response.headers["x-error-message"]


def test_the_organisations_repositories_route_still_answers(hub: HubProcess, world: People) -> None:
    listed = list(_api(hub, world.olga).list_user_repos(namespace="lab"))
    assert {r.id for r in listed} == {repo for repo in REPOS if repo.startswith("lab/")}
    with pytest.raises(HfHubHTTPError) as stranger:
        list(_api(hub, world.bob).list_user_repos(namespace="lab"))
    assert stranger.value.response.status_code == 403
