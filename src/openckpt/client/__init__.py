"""Thin helpers over huggingface_hub pointed at an openckpt hub (no second HTTP client).

- :mod:`.config` — which hub: ``--endpoint`` > ``HF_ENDPOINT`` > openckpt's config file > ``http://127.0.0.1:8000``
- :mod:`.api` — the ``HfApi`` every helper uses
- :mod:`.auth` — ``login``: validate a token, store it where huggingface_hub reads it
- :mod:`.repos` — ``create_repo``, ``list_repos``, ``delete_repo``
- :mod:`.push` — ``push``: export a training checkpoint (or take a model directory) and upload it in one commit
- :mod:`.pull` — ``pull``: download a revision and verify it with :mod:`.verify`
- :mod:`.bucket_mirror` — ``BucketMirror``: a CheckpointManager's mirror in a bucket (``hf://buckets/...``)
- :mod:`.bucket_push` — ``push_from_bucket``: publish a checkpoint from a bucket to a repo by Xet hash

This package never imports :mod:`openckpt.hub`; what the two share lives in :mod:`openckpt.protocol`.
"""
