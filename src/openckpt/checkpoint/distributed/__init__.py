"""Checkpoints of a torch.distributed run: every rank writes its part, rank 0 commits the whole.

:func:`openckpt.save`, :func:`openckpt.load` and :class:`~openckpt.CheckpointManager` come here when
torch.distributed is initialised with more than one rank (saving) or the checkpoint was saved by several ranks
(loading). A checkpoint saved by ``world_size`` ranks::

    openckpt.json        the manifest, written last by rank 0; its ``distributed`` section records the layout
    state.json           JSON skeletons of the optimizers (param groups, hyperparameters); their tensors are in dcp/
    dcp/*.safetensors    modules and optimizers, written by torch.distributed.checkpoint (DCP) through its
                         HuggingFaceStorageWriter: one file per rank holding the chunks that rank saved (replicated
                         tensors once, DTensor shards per shard; each chunk's offsets in the file's metadata)
    rank-00000/          everything else of rank 0 (RNG, data loader, counters, schedulers ...): an ordinary
    rank-00001/ ...      single-process openckpt checkpoint with its own manifest, whose digest the top one records

Nothing on disk is pickled: DCP's pickled ``.metadata`` file is never written (its Hugging Face storage derives the
layout from safetensors headers), non-tensor state is JSON, and openckpt's own messages between ranks are JSON
bytes. (DCP itself exchanges its save and load plans between ranks with torch's object collectives, in memory.)

Modules and optimizers go through DCP, which reshards them: they load at any world size, e.g. the model alone into
one process. Rank-local entries need the world size they were saved with.
"""

from openckpt.checkpoint.distributed.load import load_distributed
from openckpt.checkpoint.distributed.ranks import DCP_DIR, is_distributed, rank_dir
from openckpt.checkpoint.distributed.save import save_distributed

__all__ = ["DCP_DIR", "is_distributed", "load_distributed", "rank_dir", "save_distributed"]
