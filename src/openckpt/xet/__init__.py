"""The Xet storage format: content-defined chunking, Merkle hashes, xorbs and shards (bytes in, bytes out)."""
