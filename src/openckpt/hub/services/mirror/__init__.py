"""The hub as a pull-through cache of other hubs: when to fetch, what to ask the upstream, how a fetched commit becomes
this hub's, and each account's sealed upstream token.
"""
