"""Which scan rules apply to a repo: the hub's (``OPENCKPT_SCAN_POLICY`` and the ``scan`` rules of
``OPENCKPT_POLICY_FILE``) combined with its owner's policy, the stricter of each rule winning.

The default lets every file through but malicious (refused) and suspicious (withheld) ones (see
:mod:`openckpt.governance.scan_rules`); ``OPENCKPT_SCAN_POLICY=flag`` withholds "needs code" and inconclusive files
hub-wide, ``block`` refuses them and suspicious ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from openckpt.governance.policy import parse_policy
from openckpt.governance.scan_rules import ScanRules, combine_scan_rules
from openckpt.hub.db.models import LicensePolicy, Repo
from openckpt.hub.services.server_policy import server_policy
from openckpt.hub.settings import Settings

__all__ = ["RepoScanRules", "hub_rules", "repo_rules"]

_SETTING = {
    "allow": ScanRules(),
    "flag": ScanRules(needs_code="withhold", inconclusive="withhold"),
    "block": ScanRules(needs_code="block", inconclusive="block", suspicious="block"),
}


@dataclass(frozen=True)
class RepoScanRules:
    """The rules for one repo, and whose they are (for messages): ``"lab"``, ``"this hub"``, or both."""

    rules: ScanRules
    whose: str


def hub_rules(settings: Settings) -> ScanRules:
    """The hub's own rules: ``OPENCKPT_SCAN_POLICY`` and the server policy file's ``scan``."""
    return combine_scan_rules(_SETTING[settings.scan_policy], server_policy(settings).scan)


def repo_rules(session: Session, settings: Settings, repo: Repo | int) -> RepoScanRules:
    """The rules that apply to the files of ``repo`` (a repo or its id)."""
    found = session.get(Repo, repo) if isinstance(repo, int) else repo
    hub = hub_rules(settings)
    row = session.get(LicensePolicy, found.owner_id) if found is not None else None
    owner = parse_policy(row.rules).scan if row is not None else ScanRules()
    whose = [found.owner.name] if found is not None and not owner.empty else []
    whose += ["this hub"] if not hub.empty or not whose else []
    return RepoScanRules(combine_scan_rules(hub, owner), " and ".join(whose))
