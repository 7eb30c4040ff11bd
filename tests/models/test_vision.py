"""Vision models from timm and torchvision package and load like the rest (``make compat``).

timm and torchvision need a torchvision built for the same torch; on these machines
that is the newest PyPI torch (a CUDA build of several GB), so these tests run in
``make compat``'s second venv, not in ``make test`` (the CPU torch 2.13 has no matching
torchvision). Each model from its own constructor, random weights, backend aoti,
loaded in a fresh process: output equal to eager.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import aotpack
from conftest import run_fresh

timm = pytest.importorskip("timm", reason="vision models run in `make compat` (timm + torchvision for the newest torch)")
torchvision = pytest.importorskip("torchvision")

MODELS = {
    "timm.resnet18": lambda: timm.create_model("resnet18", pretrained=False, num_classes=10),
    "timm.efficientnet_b0": lambda: timm.create_model("efficientnet_b0", pretrained=False, num_classes=10),
    "timm.convnext_atto": lambda: timm.create_model("convnext_atto", pretrained=False, num_classes=10),
    "timm.vit_tiny": lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=64),
    "torchvision.resnet18": lambda: torchvision.models.resnet18(num_classes=10),
    "torchvision.mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(num_classes=10),
}

CHILD = r"""
import json, sys, torch, aotpack
from safetensors.torch import load_file
report = {}
for name, (path, data) in json.loads(sys.argv[1]).items():
    t = load_file(data)
    report[name] = (aotpack.load(path)(t["x"]) - t["y"]).abs().max().item()
print(json.dumps(report))
"""


@pytest.mark.slow
def test_vision_models_load_in_a_fresh_process(tmp_path):
    from safetensors.torch import save_file

    jobs = {}
    for name, build in MODELS.items():
        torch.manual_seed(0)
        model = build().eval()
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            y = model(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pkg = aotpack.compile(model, (x,), backend="aoti")
        # timm's and torchvision's code reads no input's strides: a call in another layout is copied
        assert not pkg.manifest.variants[0].inputs[0].layout_pinned, name
        path = pkg.save(tmp_path / f"{name}.aot")
        save_file({"x": x, "y": y}, tmp_path / f"{name}.safetensors")
        jobs[name] = (str(path), str(tmp_path / f"{name}.safetensors"))
    report = json.loads(run_fresh(["-c", CHILD, json.dumps(jobs)]).stdout.strip().splitlines()[-1])
    assert sorted(report) == sorted(MODELS)
    for name, error in report.items():
        assert error < 1e-3, (name, error)


TRAIN_CHILD = r"""
import json, sys, torch, aotpack
torch.manual_seed(0)
model, ref = torch.load(sys.argv[2], weights_only=False), torch.load(sys.argv[2], weights_only=False)
x = torch.load(sys.argv[3])
fn = aotpack.load(sys.argv[1], module=model)
got, want = fn(x), ref(x)
got.square().mean().backward()
want.square().mean().backward()
grads = [(name, (p.grad - q.grad).abs().max().item() / (q.grad.abs().max().item() + 1e-12))
         for (name, p), q in zip(model.named_parameters(), ref.parameters()) if q.grad is not None]
buffers = all(torch.equal(a, b) for a, b in zip(model.buffers(), ref.buffers()))
print(json.dumps({"out": (got - want).abs().max().item(), "worst_grad": max(grads, key=lambda g: g[1]),
                  "buffers": buffers, "with_grad": sum(p.grad is not None for p in model.parameters())}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["torchvision.resnet18", "timm.convnext_atto", "timm.vit_tiny"])
def test_vision_models_train_with_eager_gradients_in_a_fresh_process(tmp_path, name):
    """Training packages of code we did not write: in train mode (BatchNorm's running
    statistics updated in place, dropout off at rate 0), bound to a copy of the model in
    a fresh process; outputs, every parameter's gradient and the buffers equal eager's."""
    torch.manual_seed(0)
    model = MODELS[name]().train()
    x = torch.randn(2, 3, 64, 64)
    torch.save(model, tmp_path / "model.pt")
    torch.save(x, tmp_path / "x.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = aotpack.compile(model, (x,), train=True, backend="eager").save(tmp_path / "train.aot")
    row = json.loads(run_fresh(["-c", TRAIN_CHILD, str(path), str(tmp_path / "model.pt"), str(tmp_path / "x.pt")])
                     .stdout.strip().splitlines()[-1])
    assert row["out"] < 1e-4 and row["worst_grad"][1] < 1e-3 and row["buffers"], row
    assert row["with_grad"] == sum(1 for _ in model.parameters()), row


@pytest.mark.slow
@pytest.mark.parametrize("name", ["torchvision.mobilenet_v3_small", "timm.efficientnet_b0"])
def test_vision_models_under_the_callers_bf16_autocast(tmp_path, name):
    """A package compiled for bf16 autocast beside float32: each call runs the variant of
    the caller's autocast state, with eager's output dtype and values within bf16's
    rounding of eager's under the same autocast."""
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    x = torch.randn(1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pkg = aotpack.compile(model, (x,), backend="eager", variants=[{"name": "amp", "autocast": torch.bfloat16}])
    fn = aotpack.load(pkg.save(tmp_path / "amp.aot"))
    with torch.no_grad():
        torch.testing.assert_close(fn(x), model(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, want = fn(x), model(x)
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), atol=0.1, rtol=0.05)
