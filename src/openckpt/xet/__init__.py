"""The Xet storage format: content-defined chunking, Merkle hashes, xorbs and shards (bytes in, bytes out).

Modules: :mod:`~openckpt.xet.hashes` (hash values and their string form), :mod:`~openckpt.xet.chunking` (chunk
boundaries), :mod:`~openckpt.xet.xorb` (chunk containers), :mod:`~openckpt.xet.shard` (file and xorb metadata),
:mod:`~openckpt.xet.verify` (a shard against stored xorbs) and :mod:`~openckpt.xet.reconstruction` (byte ranges to
terms). Nothing here knows HTTP or a database; the spec is ``docs/xet-protocol.md`` of the shared design notes.
"""
