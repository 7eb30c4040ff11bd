"""Module globals that another test module's code reads as a Python module's attributes
(``shared_layers.NORM(x)`` in programs.ReadsGlobals): a package bound to the module
reads them where the loading process holds them (tests/packages/test_module_binding.py)."""

import torch

NORM = torch.nn.LayerNorm(4).requires_grad_(False)
SHIFT = torch.tensor([0.5, -0.5, 1.0, 0.0])
