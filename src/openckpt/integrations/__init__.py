"""Thin callbacks that drive a :class:`openckpt.CheckpointManager` from other training loops.

``openckpt.integrations.transformers.OpenckptCallback`` (Hugging Face ``Trainer``) and
``openckpt.integrations.lightning.OpenckptCheckpoint`` (Lightning ``Trainer``). Import the submodule you need; this
package imports nothing, so ``import openckpt`` never pulls in transformers, Lightning or torch.
"""
