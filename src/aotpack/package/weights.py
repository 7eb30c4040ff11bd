"""The weights member, streamed: tensors written as a safetensors file without ever
being assembled into one bytes object.

A package of 8 GB of weights used to be serialized to an 8 GB ``bytes`` before the
writer copied it into the file (plus a decode and re-encode of every weight on
``add_variant``): twice the weights in memory. ``TensorsMember`` keeps the tensors,
computes the member's size and digest from them, and hands the writer one buffer per
tensor, so saving costs no copy of the weights; a package opened from a file keeps its
weights as views of the mapped file, so adding a variant copies none of the old ones.

The bytes are a standard safetensors file (https://github.com/huggingface/safetensors):
an 8-byte little-endian header length, a JSON header, then the tensors' bytes with no
holes. Tensors are laid out by element size, largest first, and the header is padded
with spaces so the data starts 64-byte aligned within the member (members start
64-byte aligned in the package), so every tensor can be viewed in place at its dtype's
alignment.

Example:
    >>> m = TensorsMember({"w": torch.ones(2, 2)})
    >>> m.size, len(bytes(m)) == m.size
    (144, True)
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import torch

from . import format as fmt

_NAMES = {dtype: name for name, dtype in fmt.SAFETENSORS_DTYPES.items()}


def _raw(t: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, without a copy."""
    if t.numel() == 0:
        return memoryview(b"")
    # (as_strided, not reshape: a contiguous tensor may keep any stride on a dimension of
    # size 1, which reshape(-1) leaves as it is, and a byte view needs stride 1: torchao's
    # NF4 weights hold a [1] tensor of stride 256)
    return memoryview(t.as_strided((t.numel(),), (1,)).view(torch.uint8).numpy())


class TensorsMember:
    """A safetensors member built from ``tensors`` (CPU, contiguous) at write time."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
        header, offset = {}, 0
        for name in order:
            t = tensors[name]
            if t.device.type != "cpu" or not t.is_contiguous():
                raise ValueError(f"weight {name!r} must be a contiguous CPU tensor to be stored")
            n = t.numel() * t.element_size()
            header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
            offset += n
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * ((-(8 + len(blob))) % fmt.ALIGN)  # data starts 64-byte aligned
        self._head = struct.pack("<Q", len(blob)) + blob
        self._order = order
        self.size = len(self._head) + offset

    def __len__(self) -> int:
        return self.size

    def chunks(self) -> Iterator[memoryview]:
        """The member's bytes, as the header and then one buffer per tensor."""
        yield memoryview(self._head)
        for name in self._order:
            yield _raw(self.tensors[name])

    def digest(self, algorithm: str = fmt.DIGEST) -> str:
        if algorithm != "blake3":
            return fmt.digest(bytes(self), algorithm)
        import blake3

        h = blake3.blake3(max_threads=blake3.blake3.AUTO)
        for chunk in self.chunks():
            h.update(chunk)
        return h.hexdigest()

    def __bytes__(self) -> bytes:
        return b"".join(bytes(c) for c in self.chunks())

    def __eq__(self, other) -> bool:
        return isinstance(other, TensorsMember) and self.digest() == other.digest()

    __hash__ = None


# Weights in the layout compiled code reads them in (format version 8). Compiled code
# (AOTInductor, inductor) reads a weight through the strides it had at compile time, as
# it reads inputs (load/layout.py); safetensors holds contiguous tensors. So a weight
# that is not contiguous (a transposed matrix, a channels_last convolution, an expanded
# buffer) is stored in a form its layout is rebuilt from, without a copy at load:
# dense ones permuted into memory order ({"order": [...]}: the stored tensor is
# ``t.permute(order)``, contiguous), others as the span of memory their strides address
# ({"stride": [...]}: a 1-D tensor viewed with ``as_strided``). Until this, such a weight
# was stored contiguous and read through the compiled strides: wrong numbers, no error.


def stored_form(t: torch.Tensor) -> tuple[torch.Tensor, str | dict]:
    """(the contiguous CPU tensor to store for weight ``t``, its layout)

    >>> stored, layout = stored_form(torch.arange(6.0).reshape(2, 3).t())
    >>> layout, stored.shape, torch.equal(logical_view(stored, layout, [3, 2]), torch.arange(6.0).reshape(2, 3).t())
    ({'order': [1, 0]}, torch.Size([2, 3]), True)
    """
    from ..load.layout import layout_of

    layout = layout_of(t, dynamic=False)
    if layout == "contiguous":
        return t.to("cpu").contiguous(), layout
    if "order" in layout:
        return t.to("cpu").permute(layout["order"]).contiguous(), layout
    return _span(t).to("cpu").contiguous(), layout


def _span_size(shape, stride) -> int:
    """How many elements the strides of a tensor of ``shape`` address, first to last."""
    return 1 + sum((s - 1) * st for s, st in zip(shape, stride)) if all(shape) else 0


def _span(t: torch.Tensor) -> torch.Tensor:
    """The memory ``t``'s strides address, from its first element to its last, as 1-D."""
    return t.as_strided((_span_size(t.shape, t.stride()),), (1,))


def stored_shape(shape: list[int], layout) -> list[int]:
    """The shape the file holds for a weight of ``shape`` stored in ``layout``."""
    if layout == "contiguous":
        return list(shape)
    if "order" in layout:
        return [shape[d] for d in layout["order"]]
    return [_span_size(shape, layout["stride"])]


def logical_view(stored: torch.Tensor, layout, shape: list[int]) -> torch.Tensor:
    """The weight a stored tensor holds, in its compiled layout (a view, no copy)."""
    if layout == "contiguous":
        return stored
    if "order" in layout:
        return stored.permute(sorted(range(len(shape)), key=layout["order"].__getitem__))
    return stored.as_strided(shape, layout["stride"])


def copy_in_layout(t: torch.Tensor, device=None) -> torch.Tensor:
    """A copy of ``t`` (on ``device``) with ``t``'s own strides, whatever they are:
    ``clone`` and ``to`` make a tensor with gaps or overlaps contiguous, which compiled
    code compiled for its strides would misread."""
    device = t.device if device is None else torch.device(device)
    if t.is_contiguous():  # the common case, without layout.py on the load path
        return t.to(device, copy=True)
    from ..load.layout import layout_of

    if "stride" not in layout_of(t, dynamic=False):  # dense: to() keeps its strides
        return t.to(device, copy=True)
    return _span(t).to(device, copy=True).as_strided(t.shape, t.stride())


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """``t`` on ``device`` with its own strides (itself where it is there already)."""
    return t if t.device == torch.device(device) else copy_in_layout(t, device)
