"""Training state: Stateful adapters, save/load, the commit protocol, CheckpointManager, async saves."""
