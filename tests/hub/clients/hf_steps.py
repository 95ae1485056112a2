"""Scenarios of the stock ``huggingface_hub`` client against a hub, for every client release from 0.36 on.

The compat tests import this module to run the current release in-process, and run it as a script in a venv that
holds another release: ``python hf_steps.py STEP '{"endpoint": ...}'`` prints the step's JSON result on its last
line. It imports nothing but the standard library and ``huggingface_hub``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub import errors as hf_errors

# 2.x splits EntryNotFoundError into RemoteEntryNotFoundError (a 404 from the server) and LocalEntryNotFoundError
# (not in the cache, which also hides a server that sent a wrong error code); 0.x raises EntryNotFoundError.
REMOTE_ENTRY_NOT_FOUND: type[Exception] = getattr(hf_errors, "RemoteEntryNotFoundError", hf_errors.EntryNotFoundError)
VERSION = huggingface_hub.__version__


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    oid = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()


def raises(kind: type[Exception], call: Callable[..., Any], *args: Any, **kwargs: Any) -> Exception:
    """The exception of ``kind`` that ``call`` raises; anything else (or nothing) fails the step."""
    try:
        call(*args, **kwargs)
    except Exception as e:
        if isinstance(e, hf_errors.LocalEntryNotFoundError):
            raise AssertionError(f"expected {kind.__name__} from the server, got a local cache miss: {e}") from e
        if not isinstance(e, kind):
            raise AssertionError(f"expected {kind.__name__}, got {type(e).__name__}: {e}") from e
        return e
    raise AssertionError(f"expected {kind.__name__}, but the call succeeded")


def _download(
    endpoint: str, token: str | bool, repo_id: str, repo_type: str, path: str, cache: Path, **kw: Any
) -> bytes:
    local = hf_hub_download(repo_id, path, repo_type=repo_type, endpoint=endpoint, token=token, cache_dir=cache, **kw)
    return Path(local).read_bytes()


def _write_folder(root: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)


def round_trip(endpoint: str, token: str, repo_id: str, repo_type: str, work: str, big: int) -> dict[str, Any]:
    """Create, upload (regular and LFS files), inspect, branch and tag, download by branch / tag / sha, snapshot
    with patterns, delete a file, and delete the repo."""
    work_dir, cache = Path(work), Path(work) / "cache"
    api = HfApi(endpoint=endpoint, token=token)
    url = api.create_repo(repo_id, repo_type=repo_type)
    assert url.repo_id == repo_id, url
    assert api.create_repo(repo_id, repo_type=repo_type, exist_ok=True).repo_id == repo_id

    # LFS by size (>= 10 MB) or, when small, by its suffix; the prefix keeps the gate from reading it as a pickle
    weights = b"\x00\x00opaque\x00" + os.urandom(big - 9)
    files = {
        "config.json": b'{"hidden": 8}',
        "README.md": b"---\nlicense: mit\ntags:\n- compat\n---\n# A test repo\n",
        "sub/notes.txt": b"notes",
        "sub/deeper/data.csv": b"a,b\n1,2\n",
        "weights.bin": weights,
    }
    _write_folder(work_dir / "src", files)
    first = api.upload_folder(folder_path=work_dir / "src", repo_id=repo_id, repo_type=repo_type)
    assert len(first.oid) == 40, first
    api.upload_file(path_or_fileobj=b"added", path_in_repo="extra/added.txt", repo_id=repo_id, repo_type=repo_type)

    info = api.repo_info(repo_id, repo_type=repo_type, files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings or []}
    expected = {".gitattributes", "extra/added.txt", *files}
    assert set(siblings) == expected, sorted(siblings)
    lfs = siblings["weights.bin"].lfs
    assert lfs is not None and lfs.sha256 == hashlib.sha256(weights).hexdigest() and lfs.size == len(weights), lfs
    assert siblings["config.json"].blob_id == git_blob_sha1(files["config.json"]), siblings["config.json"]
    assert siblings["config.json"].lfs is None and siblings["config.json"].size == len(files["config.json"])
    assert info.private is False and getattr(info.card_data, "license", None) == "mit", info.card_data
    assert info.sha is not None and len(info.sha) == 40
    assert sorted(api.list_repo_files(repo_id, repo_type=repo_type)) == sorted(expected)

    tree = {e.path: e for e in api.list_repo_tree(repo_id, repo_type=repo_type, recursive=True)}
    assert {p for p, e in tree.items() if type(e).__name__ == "RepoFolder"} == {"sub", "sub/deeper", "extra"}, tree
    weights_entry = tree["weights.bin"]
    assert weights_entry.blob_id == git_blob_sha1(lfs_pointer(weights)), "a LFS file's oid is its pointer's git sha1"
    assert weights_entry.lfs is not None and weights_entry.lfs.sha256 == hashlib.sha256(weights).hexdigest()
    top = sorted(e.path for e in api.list_repo_tree(repo_id, repo_type=repo_type))
    assert top == [".gitattributes", "README.md", "config.json", "extra", "sub", "weights.bin"], top
    below = sorted(e.path for e in api.list_repo_tree(repo_id, path_in_repo="sub", repo_type=repo_type))
    assert below == ["sub/deeper", "sub/notes.txt"], below
    found = api.get_paths_info(repo_id, ["config.json", "sub", "no/such/file"], repo_type=repo_type)
    assert sorted((e.path, type(e).__name__) for e in found) == [("config.json", "RepoFile"), ("sub", "RepoFolder")]

    api.create_branch(repo_id, branch="dev/x", repo_type=repo_type)
    api.create_branch(repo_id, branch="dev/x", repo_type=repo_type, exist_ok=True)
    api.create_tag(repo_id, tag="v1", tag_message="first", repo_type=repo_type)
    api.create_tag(repo_id, tag="v1", repo_type=repo_type, exist_ok=True)
    api.upload_file(path_or_fileobj=b"dev", path_in_repo="dev-only.txt", repo_id=repo_id, repo_type=repo_type,
                    revision="dev/x")  # fmt: skip
    api.upload_file(path_or_fileobj=b'{"hidden": 16}', path_in_repo="config.json", repo_id=repo_id, repo_type=repo_type)
    refs = api.list_repo_refs(repo_id, repo_type=repo_type)
    branches = {b.name: b.target_commit for b in refs.branches}
    assert set(branches) == {"main", "dev/x"} and [t.name for t in refs.tags] == ["v1"], refs
    assert refs.converts == [], refs
    assert refs.tags[0].target_commit == info.sha != branches["main"], (refs, info.sha)

    last = {e.path: e.last_commit for e in api.list_repo_tree(repo_id, repo_type=repo_type, expand=True)}
    assert last["config.json"] is not None and last["config.json"].oid == branches["main"], last
    assert last["README.md"].title == "Upload folder using huggingface_hub", last  # the client's default message
    assert {last[p].oid for p in ("README.md", "sub", "weights.bin")} == {first.oid}, last
    assert last["extra"].oid == info.sha and last[".gitattributes"].title == "initial commit", last
    paths = api.get_paths_info(repo_id, ["sub/notes.txt", "extra"], repo_type=repo_type, expand=True)
    assert [(e.path, e.last_commit.oid) for e in paths] == [("sub/notes.txt", first.oid), ("extra", info.sha)]

    commits = api.list_repo_commits(repo_id, repo_type=repo_type)
    assert commits[0].commit_id == branches["main"] and len(commits) == 4, commits  # initial + 3 uploads
    assert commits[-1].title == "initial commit" and commits[2].commit_id == first.oid, commits
    assert len({c.commit_id for c in commits}) == 4 and all(c.authors for c in commits)

    get: Callable[..., bytes] = lambda path, **kw: _download(endpoint, token, repo_id, repo_type, path, cache, **kw)  # noqa: E731
    assert get("dev-only.txt", revision="dev/x") == b"dev"
    assert get("config.json", revision="v1") == files["config.json"]
    assert get("config.json") == b'{"hidden": 16}'
    assert get("config.json", revision=first.oid) == files["config.json"]
    assert get("weights.bin", revision=first.oid) == weights
    assert raises(REMOTE_ENTRY_NOT_FOUND, get, "extra/added.txt", revision=first.oid)

    snap = Path(snapshot_download(repo_id, repo_type=repo_type, allow_patterns=["*.json", "sub/*"], endpoint=endpoint,
                                  token=token, cache_dir=cache))  # fmt: skip
    got = sorted(str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_file())
    assert got == ["config.json", "sub/deeper/data.csv", "sub/notes.txt"], got
    assert (snap / "sub/deeper/data.csv").read_bytes() == files["sub/deeper/data.csv"]

    api.delete_file("sub/notes.txt", repo_id, repo_type=repo_type)
    assert "sub/notes.txt" not in api.list_repo_files(repo_id, repo_type=repo_type)
    api.delete_branch(repo_id, branch="dev/x", repo_type=repo_type)
    api.delete_tag(repo_id, tag="v1", repo_type=repo_type)
    refs = api.list_repo_refs(repo_id, repo_type=repo_type)
    assert [b.name for b in refs.branches] == ["main"] and refs.tags == [], refs
    api.delete_repo(repo_id, repo_type=repo_type)
    raises(hf_errors.RepositoryNotFoundError, api.repo_info, repo_id, repo_type=repo_type)
    api.delete_repo(repo_id, repo_type=repo_type, missing_ok=True)
    return {"version": VERSION, "commits": [c.commit_id for c in commits]}


def error_classes(endpoint: str, owner: str, stranger: str, repo_id: str, repo_type: str, work: str) -> dict[str, Any]:
    """Each error class the client derives from the hub's answers. ``repo_id`` is a private repo of ``owner``
    holding ``config.json``; ``stranger`` is another user's token."""
    cache = Path(work) / "cache"
    kinds = {"repo_type": repo_type, "cache_dir": cache, "endpoint": endpoint}
    api = HfApi(endpoint=endpoint, token=owner)
    info = api.repo_info(repo_id, repo_type=repo_type)
    assert info.private is True and info.id == repo_id, info
    assert _download(endpoint, owner, repo_id, repo_type, "config.json", cache) == b"{}"

    missing = repo_id + "-missing"
    not_found = hf_errors.RepositoryNotFoundError
    raises(not_found, api.repo_info, missing, repo_type=repo_type)
    raises(not_found, hf_hub_download, missing, "config.json", token=owner, **kinds)
    for token in (False, stranger):  # a private repo looks exactly like a missing one
        raises(not_found, HfApi(endpoint=endpoint, token=token).repo_info, repo_id, repo_type=repo_type)
        raises(not_found, hf_hub_download, repo_id, "config.json", token=token, **{**kinds, "cache_dir": cache / "x"})
        raises(not_found, HfApi(endpoint=endpoint, token=token).list_repo_files, repo_id, repo_type=repo_type)
    assert HfApi(endpoint=endpoint, token=stranger).repo_exists(repo_id, repo_type=repo_type) is False

    raises(hf_errors.RevisionNotFoundError, api.repo_info, repo_id, repo_type=repo_type, revision="no-such-branch")
    raises(hf_errors.RevisionNotFoundError, hf_hub_download, repo_id, "config.json", token=owner,
           revision="no-such-branch", **kinds)  # fmt: skip
    raises(hf_errors.RevisionNotFoundError, api.list_repo_files, repo_id, repo_type=repo_type, revision="f" * 40)
    raises(REMOTE_ENTRY_NOT_FOUND, hf_hub_download, repo_id, "no-such-file.txt", token=owner, **kinds)
    raises(REMOTE_ENTRY_NOT_FOUND, api.delete_file, "no-such-file.txt", repo_id, repo_type=repo_type)
    raises(REMOTE_ENTRY_NOT_FOUND, lambda: list(api.list_repo_tree(repo_id, "no-such-dir", repo_type=repo_type)))
    assert api.file_exists(repo_id, "config.json", repo_type=repo_type) is True
    assert api.file_exists(repo_id, "no-such-file.txt", repo_type=repo_type) is False
    return {"version": VERSION}


def list_and_page(endpoint: str, token: str, author: str, names: list[str], history: str, work: str) -> dict[str, Any]:
    """``list_models`` by author, search and limit; ``list_repo_commits`` and ``list_repo_tree`` over several pages
    (``history`` is a repo with more commits and files than one page holds)."""
    api = HfApi(endpoint=endpoint, token=token)
    ids = sorted(m.id for m in api.list_models(author=author))
    assert ids == sorted(f"{author}/{n}" for n in names), ids
    assert sorted(m.id for m in api.list_datasets(author=author)) == [], "models and datasets are listed apart"
    assert [m.id for m in api.list_models(search=f"{author}/{names[0]}")] == [f"{author}/{names[0]}"]
    assert len(list(api.list_models(author=author, limit=2))) == 2
    full = list(api.list_models(author=author, full=True, limit=1))
    assert full[0].sha is not None and full[0].siblings is not None, full
    commits = api.list_repo_commits(history)
    files = list(api.list_repo_tree(history, recursive=True))
    return {"commits": [c.commit_id for c in commits], "files": sorted(f.path for f in files), "version": VERSION}


def resume_incomplete(endpoint: str, token: str, repo_id: str, path: str, work: str, have: int) -> dict[str, Any]:
    """0.x resumes a download from ``<blob>.incomplete`` in the cache with ``Range: bytes=N-``. Plant ``have`` bytes
    of 0xFF there: if the hub honours the range, they stay in front of the rest of the file."""
    cache = Path(work) / "cache"
    api = HfApi(endpoint=endpoint, token=token)
    entry = next(iter(api.get_paths_info(repo_id, [path])))
    assert entry.lfs is not None
    blobs = cache / f"models--{repo_id.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{entry.lfs.sha256}.incomplete").write_bytes(b"\xff" * have)
    local = Path(hf_hub_download(repo_id, path, endpoint=endpoint, token=token, cache_dir=cache))
    data = local.read_bytes()
    tail = hashlib.sha256(data[have:]).hexdigest()
    return {"size": len(data), "head": data[:have] == b"\xff" * have, "tail": tail, "version": VERSION}


def likes_and_collections(endpoint: str, owner: str, fan: str, repo_id: str, work: str) -> dict[str, Any]:
    """``fan`` likes ``repo_id`` (the Hub's ``POST …/like``: the client has no method for it), lists its likers and
    its own likes, and unlikes it; ``owner`` creates a private collection, adds, moves and deletes an item, renames
    the collection, lists and deletes it."""
    from huggingface_hub.utils import get_session, hf_raise_for_status

    fan_api, api = HfApi(endpoint=endpoint, token=fan), HfApi(endpoint=endpoint, token=owner)
    hf_raise_for_status(
        get_session().post(f"{endpoint}/api/models/{repo_id}/like", headers=fan_api._build_hf_headers())
    )
    likers = [u.username for u in fan_api.list_repo_likers(repo_id)]
    liked = fan_api.list_liked_repos().models
    fan_api.unlike(repo_id)
    made = api.create_collection(f"Client {VERSION}", private=True)
    assert made.private is True and made.items == [], made
    filled = api.add_collection_item(made.slug, repo_id, "model", note="old client")
    api.update_collection_item(made.slug, filled.items[0].item_object_id, position=0)
    items = [[i.item_type, i.item_id, i.note] for i in api.get_collection(made.slug).items]
    renamed = api.update_collection_metadata(made.slug, title=f"Renamed {VERSION}")
    assert renamed.slug[-24:] == made.slug[-24:] and renamed.title == f"Renamed {VERSION}", renamed
    assert renamed.slug in [c.slug for c in api.list_collections(owner=made.slug.split("/")[0])]
    api.delete_collection_item(made.slug, filled.items[0].item_object_id)
    api.delete_collection(made.slug)
    return {"likers": likers, "liked": liked, "items": items, "version": VERSION}


STEPS: dict[str, Callable[..., dict[str, Any]]] = {
    "round_trip": round_trip,
    "error_classes": error_classes,
    "list_and_page": list_and_page,
    "resume_incomplete": resume_incomplete,
    "likes_and_collections": likes_and_collections,
}

if __name__ == "__main__":
    result = STEPS[sys.argv[1]](**json.loads(sys.argv[2]))
    print(json.dumps(result))
