"""Reproducers: content-addressed inputs and standalone scripts.

    InputWriter / InputReader   inputs.py: tensors as code + storages/<xxh3-128>
    save_repro                  script.py: graph + inputs -> repro.py (run | accuracy)
    package_repro               script.py: a package variant + its example inputs -> repro.py
    minify, minify_repro        minify.py: delta debugging down to the nodes that still fail
"""

from .inputs import InputReader, InputWriter, storage_hash
from .minify import minify, minify_repro
from .script import package_repro, save_repro

__all__ = ["InputWriter", "InputReader", "storage_hash", "save_repro", "package_repro", "minify", "minify_repro"]
