"""The hub's use cases, independent of HTTP. The repo core is flat (repos, commits and the commit flow, trees, the
scan gate, governance, access, accounts); the rest is grouped by subdomain: ``xet``, ``lfs``, ``storage``,
``webhooks``, ``community``, ``buckets`` and ``mirror``."""
