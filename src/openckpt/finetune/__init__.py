"""Fine-tuning checkpoints (LoRA or full) with recorded lineage, and estimating their memory first.

- :mod:`.facts` — what an estimate reads of a model: ``config.json`` and safetensors headers (local or hub)
- :mod:`.estimate` — ``estimate``: weights, gradients, optimizer state, activations; fits here / on a GPU?
- :mod:`.model` — ``load_model``: a transformers model from a local directory, with the task's head
- :mod:`.lora` — LoRA options, per-architecture target modules, the peft wrapper
- :mod:`.data` — CSV/JSONL rows, their sha256, the held-out split, tokenisation
- :mod:`.train` — the resumable loop (CheckpointManager, ResumableLoader) and the held-out evaluation
- :mod:`.licensing` — the license inherited from the base, refused before training when its terms forbid it
- :mod:`.card`, :mod:`.output` — the model card and the atomically written adapter or model
- :mod:`.run` — ``finetune``: all of the above in order

Bases are local directories: pulling a hub repo (through the trust gate) is the caller's part (``openckpt
finetune`` does it with :mod:`openckpt.client`), since this layer sits below the client.
"""
