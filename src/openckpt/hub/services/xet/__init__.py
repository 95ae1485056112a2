"""Xet on the hub: the CAS (xorbs, shards, global dedup), reconstructions, ingestion of whole files into xorbs, the Xet
headers of the Hub API, and CAS tokens. Files stored as Xet terms are :mod:`..stored_files`, below it.
"""
