"""Reproducers: content-addressed inputs and standalone scripts.

    InputWriter / InputReader   inputs.py: tensors as code + storages/<sha256>
    save_repro                  script.py: graph + inputs -> repro.py (run | accuracy)
    package_repro               script.py: a package variant + its example inputs -> repro.py
"""

from .inputs import InputReader, InputWriter, storage_hash
from .script import package_repro, save_repro

__all__ = ["InputWriter", "InputReader", "storage_hash", "save_repro", "package_repro"]
