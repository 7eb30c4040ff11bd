"""References to user objects by name: ``FILE.py:NAME`` or ``package.module:qualname``.

How the CLI finds a program, its examples and a user backend, and how the minifier
finds a ``module:function`` torch.compile backend; one resolver for all of them.

    >>> load_object("collections:OrderedDict")
    <class 'collections.OrderedDict'>
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from .errors import AotpackError


def load_object(ref: str):
    """``path/to/file.py:name`` (the file is run as a module, its folder put on
    sys.path) or ``package.module:dotted.name`` (imported) -> the object. AotpackError
    naming what is missing."""
    where, sep, name = ref.rpartition(":")
    if not sep or not where or not name:
        raise AotpackError(f"{ref!r} is not FILE:NAME or module:NAME", hint="e.g. model.py:build_model")
    if where.endswith(".py") or os.path.sep in where:
        if not os.path.exists(where):
            raise AotpackError(f"no file {where}")
        if not os.path.isfile(where):
            raise AotpackError(f"{where} is not a Python file (a device, a fifo or a folder)",
                               hint="name a .py file: path/to/model.py:NAME")
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(where))[0], where)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, os.path.dirname(os.path.abspath(where)))
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise AotpackError(f"cannot import {where}: {e}", hint="check the module name and that it is "
                               "installed here") from e
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            raise AotpackError(f"{where} has no {name!r}")
        obj = getattr(obj, part)
    return obj
