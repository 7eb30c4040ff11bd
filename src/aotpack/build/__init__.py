"""The build side: a function or module and example inputs -> a captured program ->
a package. Tracing (torch.export, AOT autograd) happens here and nowhere on the load side.

- ``capture.py``: binding, torch.export, and the analyses of the graph (aliases, layout
  pins, in-place writes, global state, guard specs);
- ``effects.py``: what the program does besides tensors, seen while it is captured;
- ``eager_check.py``: a dynamic capture's graph run beside the program, at the example
  and at another size of each Dim (what a traced ``torch.SymInt`` hides from the trace);
- ``subclass_weights.py``: tensor subclass weights (torchao's quantized ones) traced as
  the plain tensors inside them;
- ``autograd.py``: training packages (the joint forward + backward, partitioned);
- ``rebuild.py``: a variant recompiled from its portable program (the one entry point
  the load side calls, for ``load(..., on_mismatch="rebuild")``).
"""
