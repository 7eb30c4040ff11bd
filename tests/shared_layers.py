"""Module globals that another test module's code reads as a Python module's attributes
(``shared_layers.NORM(x)``, ``shared_layers.SIGN`` in programs.ReadsGlobals): a package bound to the module
reads them where the loading process holds them (tests/packages/test_module_binding.py)."""

import torch

NORM = torch.nn.LayerNorm(4).requires_grad_(False)
SHIFT = torch.tensor([0.5, -0.5, 1.0, 0.0])
SIGN = 1  # an int: ``1.0`` makes the same numbers, of another type, which a bound package refuses
