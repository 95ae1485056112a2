"""The hub's storage upkeep: accounting, integrity checks, garbage collection and its schedule, and the leases that let
one process of the hub do a job at a time.
"""
