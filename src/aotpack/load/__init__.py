"""The load side: a package file -> a guarded callable. Imports nothing of the build
side (no torch.export, no inductor) but ``build.rebuild``, and that only to rebuild a
variant made for another machine (tests/packages/test_load_path.py checks).

- ``runtime.py``: ``load`` and ``Loaded``: variants, dispatch, the backend call;
- ``guards.py``: every check a call must pass, one declarative list;
- ``binding.py``: ``load(path, module=m)`` following the live module;
- ``layout.py``, ``views.py``: memory layouts and outputs that are views of inputs;
- ``autograd_runtime.py``: training packages as an ``autograd.Function``.
"""
