"""Inputs of a reproducer: tensors in a content-addressed folder, rebuilt by generated code.

``InputWriter(save_dir)`` records values as the lines of a ``load_args(reader)``
function. Each tensor *storage* is written once, to ``save_dir/storages/<hash of its
bytes>``: the same bytes get the same name on any machine, two views of one storage
share one file, and a storage already in the folder costs no write.

The hash is XXH3-128 of the raw bytes (32 hex digits). Why not sha256: naming storages
is deduplication, not a security boundary (package integrity uses BLAKE3, a cryptographic hash), and at
~30 GB/s XXH3 keeps writing a reproducer at disk speed, where sha256 (~1.7 GB/s on one
core) made the hash, not the disk, the bottleneck. torch's content store made the same
trade with its own non-cryptographic hash. Shape, stride,
storage offset, dtype, device, requires_grad and leaf-ness are recorded in the code.

``InputReader(save_dir)`` rebuilds them, memory-mapping each storage file. When the
folder or a storage is missing it fills deterministic random data of the right dtype
(seeded by the storage's hash) and says so once, so a reproducer still runs when only
its script was shared.

``InputReader`` imports nothing but torch and the standard library: its source is
copied into every generated repro.py, which then needs only torch.

Example:
    >>> w = InputWriter("out")                                   # doctest: +SKIP
    >>> w.tensor("x", torch.randn(2, 3)); w.const("n", 4)        # doctest: +SKIP
    >>> print(w.load_args_source())                              # doctest: +SKIP
    def load_args(reader):
        buf0 = reader.storage('1f0e...', 24, device='cpu', dtype_hint=torch.float32)
        x = reader.tensor(buf0, (2, 3), (3, 1), 0, torch.float32)
        n = 4
        return [x, n]
"""

from __future__ import annotations

import os

import torch

from ..atomic import atomic_file

__all__ = ["InputWriter", "InputReader", "storage_hash"]


def _storage_bytes(storage: torch.UntypedStorage) -> memoryview:
    """The bytes of a storage, without a copy when it is on the CPU."""
    cpu = storage if storage.device.type == "cpu" else storage.cpu()
    if cpu.nbytes() == 0:
        return memoryview(b"")
    u8 = torch.empty(0, dtype=torch.uint8).set_(cpu)
    return memoryview(u8.numpy())


def storage_hash(storage: torch.UntypedStorage) -> str:
    """XXH3-128 hex digest of a storage's raw bytes: its file name in ``storages/``."""
    import xxhash

    return xxhash.xxh3_128_hexdigest(_storage_bytes(storage))


class InputWriter:
    """Record tensors, symbolic ints and constants as ``load_args(reader)`` source.

    Args:
      save_dir: the folder; storages go to ``save_dir/storages/``. None writes no
        storage files (the reader then fills deterministic random data).
    """

    def __init__(self, save_dir: str | os.PathLike | None):
        self.save_dir = None if save_dir is None else os.fspath(save_dir)
        self._lines: list[str] = []
        self._names: list[str] = []
        self._storages: dict[tuple, str] = {}  # (device, data_ptr, nbytes) -> buf name
        self.bytes_written = 0
        self.bytes_skipped = 0

    def _storage(self, t: torch.Tensor) -> str:
        storage = t.untyped_storage()
        key = (str(storage.device), storage.data_ptr(), storage.nbytes())
        if key in self._storages:  # a view of a storage already recorded
            return self._storages[key]
        digest = storage_hash(storage)
        if self.save_dir is not None:
            folder = os.path.join(self.save_dir, "storages")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, digest)
            if os.path.exists(path):
                self.bytes_skipped += storage.nbytes()
            else:
                with atomic_file(path) as f:
                    f.write(_storage_bytes(storage))
                self.bytes_written += storage.nbytes()
        name = f"buf{len(self._storages)}"
        self._storages[key] = name
        device = storage.device.type if storage.device.index is None else str(storage.device)
        self._lines.append(f"{name} = reader.storage({digest!r}, {storage.nbytes()}, device={device!r}, "
                           f"dtype_hint={t.dtype})")
        return name

    def tensor(self, name: str, t: torch.Tensor) -> None:
        """Record tensor ``t`` as variable ``name`` (a Python identifier)."""
        buf = self._storage(t)
        extra = ""
        if t.requires_grad:
            extra = ", requires_grad=True" + ("" if t.is_leaf else ", is_leaf=False")
        self._lines.append(f"{name} = reader.tensor({buf}, {tuple(t.shape)}, {tuple(t.stride())}, "
                           f"{t.storage_offset()}, {t.dtype}{extra})")
        self._names.append(name)

    def dtensor(self, name: str, value) -> None:
        """Record a DTensor: its local shard as a tensor, then ``DTensor.from_local`` on
        a DeviceMesh of the same shape (the script needs a process group; the trace
        writes a fake one into its preamble)."""
        local = f"{name}_local"
        self.tensor(local, value.to_local().detach())
        self._names.remove(local)
        self._lines.append(f"{name} = torch.distributed.tensor.DTensor.from_local({local}, "
                           f"{_mesh_source(value.device_mesh)}, [{', '.join(map(_placement_source, value.placements))}], "
                           f"run_check=False, shape={tuple(value.shape)}, stride={tuple(value.stride())})")
        if value.requires_grad:
            self._lines.append(f"{name} = {name}.detach().requires_grad_(True)")
        self._names.append(name)

    def symint(self, name: str, value) -> None:
        """Record a (symbolic) int by its value at the time of capture (no guard added)."""
        from .. import _torch_compat as compat

        self._lines.append(f"{name} = {compat.symint_hint(value)}")
        self._names.append(name)

    def const(self, name: str, value) -> None:
        """Record a Python constant (None, bool, int, float, str, dtype, device)."""
        if isinstance(value, torch.device):
            text = f"torch.device({str(value)!r})"
        elif isinstance(value, torch.dtype):
            text = str(value)
        elif isinstance(value, float) and value != value:
            text = "float('nan')"
        elif isinstance(value, float) and value in (float("inf"), float("-inf")):
            text = f"float({str(value)!r})"
        else:
            text = repr(value)
        compile(text, "<const>", "eval")  # refuse anything that is not a Python literal
        self._lines.append(f"{name} = {text}")
        self._names.append(name)

    def value(self, name: str, value) -> None:
        """Record any supported value (dispatches on its type)."""
        if _is_dtensor(value):
            self.dtensor(name, value)
        elif type(value).__name__ == "DeviceMesh":
            self._names.append(name)
            self._lines.append(f"{name} = {_mesh_source(value)}")
        elif isinstance(value, torch.Tensor):
            self.tensor(name, value)
        elif isinstance(value, torch.SymInt):
            self.symint(name, value)
        else:
            self.const(name, value)

    def load_args_source(self) -> str:
        body = [f"    {line}" for line in self._lines] + [f"    return [{', '.join(self._names)}]"]
        return "def load_args(reader):\n" + "\n".join(body) + "\n"


def _is_dtensor(value) -> bool:
    return isinstance(value, torch.Tensor) and type(value).__name__ == "DTensor" and hasattr(value, "to_local")


def _mesh_source(mesh) -> str:
    names = getattr(mesh, "mesh_dim_names", None)
    extra = f", mesh_dim_names={tuple(names)!r}" if names else ""
    return f"torch.distributed.device_mesh.DeviceMesh({mesh.device_type!r}, {mesh.mesh.tolist()!r}{extra})"


def _placement_source(p) -> str:
    kind = type(p).__name__
    if kind == "Shard":
        return f"torch.distributed.tensor.Shard({p.dim})"
    if kind == "Replicate":
        return "torch.distributed.tensor.Replicate()"
    if kind == "Partial":
        return f"torch.distributed.tensor.Partial({p.reduce_op!r})"
    raise TypeError(f"cannot write DTensor placement {p!r}")


class InputReader:
    """Rebuild what InputWriter recorded. Self-contained: copied into repro scripts.

    Args:
      save_dir: the folder holding ``storages/``; None or missing -> random data.
    """

    warned = False  # once per process, however many readers a script makes
    unverified = False

    def __init__(self, save_dir=None):
        self.save_dir = save_dir
        self.missing = 0

    def storage(self, digest, nbytes, device="cpu", dtype_hint=None):
        import os as _os
        import sys as _sys

        path = None if self.save_dir is None else _os.path.join(self.save_dir, "storages", digest)
        if path is not None and _os.path.lexists(path):  # there, so it must be whole: never random data
            if not _os.path.isfile(path) or _os.path.islink(path):
                raise RuntimeError(f"aotpack repro: storage {path} is not a regular file (a link, a fifo, a "
                                   "folder); restore it, or delete it to run on deterministic random data")
            if _os.path.getsize(path) < nbytes:
                raise RuntimeError(f"aotpack repro: storage {path} is damaged: {_os.path.getsize(path)} bytes, "
                                   f"{nbytes} expected; restore it, or delete it to run on deterministic random "
                                   "data")
        if path is not None and _os.path.isfile(path) and _os.path.getsize(path) >= nbytes:
            if nbytes == 0:
                storage = torch.UntypedStorage(0)
            else:
                storage = torch.UntypedStorage.from_file(path, False, nbytes)  # private memory map
                self._verify(storage, digest, path)
            return storage if device == "cpu" else storage.to(device=device)
        self.missing += 1
        if not InputReader.warned:
            InputReader.warned = True
            print(f"aotpack repro: storage {digest[:12]}... not found under {self.save_dir!r}; "
                  "using deterministic random data for missing inputs", file=_sys.stderr)
        return self._random(digest, nbytes, device, dtype_hint or torch.uint8)

    @staticmethod
    def _verify(storage, digest, path):
        """A storage is named by the XXH3-128 of its bytes: check it before use (xxhash
        is aotpack's dependency; a script run with torch alone says it cannot check)."""
        try:
            import xxhash
        except ImportError:
            if not InputReader.unverified:
                InputReader.unverified = True
                import sys as _sys

                print("aotpack repro: xxhash is not installed, storages are used without checking their names",
                      file=_sys.stderr)
            return
        data = memoryview(torch.empty(0, dtype=torch.uint8).set_(storage).numpy())
        got = xxhash.xxh3_128_hexdigest(data)
        if got != digest:
            raise RuntimeError(f"aotpack repro: storage {path} is damaged: its bytes hash to {got[:12]}..., its name "
                               f"says {digest[:12]}...; restore it, or delete it to run on deterministic random data")

    @staticmethod
    def _random(digest, nbytes, device, dtype):
        g = torch.Generator().manual_seed(int(digest[:15], 16))
        item = torch.empty((), dtype=dtype).element_size()
        n = nbytes // item
        if dtype.is_floating_point:
            data = torch.randn(n, generator=g).to(dtype)
        elif dtype.is_complex:
            data = torch.randn(n, 2, generator=g).to(torch.float64)
            data = torch.view_as_complex(data.contiguous()).to(dtype)
        elif dtype == torch.bool:
            data = torch.randint(0, 2, (n,), generator=g).bool()
        else:
            data = torch.randint(0, 8, (n,), generator=g).to(dtype)
        storage = torch.UntypedStorage(nbytes)
        if n:
            torch.empty(0, dtype=dtype).set_(storage, 0, (n,), (1,)).copy_(data)
        return storage if device == "cpu" else storage.to(device=device)

    def tensor(self, storage, shape, stride, offset, dtype, requires_grad=False, is_leaf=True):
        t = torch.empty(0, dtype=dtype, device=storage.device).set_(storage, offset, shape, stride)
        if requires_grad:
            t = t.detach().requires_grad_(True)
            if not is_leaf:
                t = t.clone()  # autograd history, as the original non-leaf had
        return t
