"""The ``openckpt`` command line: a Typer app (:mod:`.app`) with one module per command.

Nothing in the library imports this package; command modules import torch and the library inside their
functions, so ``openckpt --help`` starts fast.
"""
