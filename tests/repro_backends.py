"""torch.compile backends that misbehave on purpose, for reproducer tests."""

import operator

import torch


def wrong_mul(gm, example_inputs):
    """Runs the graph, but every multiplication is off by 1%."""
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in (operator.mul, torch.mul, torch.ops.aten.mul.Tensor):
            node.target = _bad_mul
    gm.recompile()
    return gm


def _bad_mul(a, b):
    return torch.mul(a, b) * 1.01


def raises_on_sin(gm, example_inputs):
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in (torch.sin, torch.ops.aten.sin.default):
            raise RuntimeError("backend cannot compile sin")
    return gm


def wrong_exp(gm, example_inputs):
    """Runs the graph, but exp is off by 1%: wrong numbers from one op."""
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in (torch.exp, torch.ops.aten.exp.default):
            node.target = _bad_exp
    gm.recompile()
    return gm


def _bad_exp(a):
    return torch.exp(a) * 1.01
