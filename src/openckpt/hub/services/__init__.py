"""The hub's use cases, independent of HTTP: accounts and tokens, repos, commits and trees, LFS transfers."""
