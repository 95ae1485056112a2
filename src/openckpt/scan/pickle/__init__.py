"""The pickle scanner: a symbolic unpickler (:mod:`.machine`) deciding by allowlist (:mod:`.globals`)."""
