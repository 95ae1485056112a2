"""Webhooks: an account's hooks, their deliveries through the outbox, and the address filter that keeps deliveries off
the hub's own network.
"""
