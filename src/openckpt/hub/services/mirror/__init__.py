"""The hub as a pull-through cache of other hubs: when to fetch, what to ask the upstream, how a fetched commit becomes
this hub's, how readers follow a fetch in progress, and each account's sealed upstream token.
"""
