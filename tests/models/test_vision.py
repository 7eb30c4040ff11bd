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
