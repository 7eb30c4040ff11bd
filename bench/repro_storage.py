"""Writing reproducer inputs: InputWriter against the machine's own sequential write speed.

1 GiB of float32 tensors in 64 MiB storages, half of them duplicates of the other half
(same bytes, other tensors). Both cases end with an fsync of what they wrote, so both
measure the disk, not the page cache. The goal: InputWriter moves the unique half at
>= 70% of plain sequential writes of the same bytes, and duplicates cost no write.

    python bench/repro_storage.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import table, write  # noqa: E402

MIB = 1 << 20


def _sync_folder(folder: str) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def main() -> None:
    import torch

    from aotpack.repro import InputWriter

    g = torch.Generator().manual_seed(0)
    unique = [torch.randn(16 * MIB, generator=g) for _ in range(8)]  # 8 x 64 MiB = 512 MiB
    tensors = unique + [t.clone() for t in unique]  # 1 GiB in all, half duplicates
    unique_bytes = sum(t.numel() * 4 for t in unique)
    base = tempfile.mkdtemp(prefix="aotpack-bench-", dir=os.environ.get("BENCH_DIR"))
    try:
        def plain_write() -> float:
            plain = os.path.join(base, "plain")
            os.makedirs(plain)
            t = time.perf_counter()
            for i, x in enumerate(unique):
                with open(os.path.join(plain, str(i)), "wb") as f:
                    f.write(memoryview(x.numpy()))
            _sync_folder(plain)
            elapsed = time.perf_counter() - t
            shutil.rmtree(plain)
            return elapsed

        plain_s = min(plain_write(), plain_write())  # the disk's best, so the ratio is not flattered

        out = os.path.join(base, "repro")
        t = time.perf_counter()
        w = InputWriter(out)
        for i, x in enumerate(tensors):
            w.tensor(f"t{i}", x)
        _sync_folder(out)
        writer_s = time.perf_counter() - t
        files = len(os.listdir(os.path.join(out, "storages")))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    disk = unique_bytes / plain_s
    ours = unique_bytes / writer_s
    row = {"total_bytes": 2 * unique_bytes, "unique_bytes": unique_bytes, "plain_write_s": plain_s,
           "inputwriter_s": writer_s, "disk_mb_s": disk / 1e6, "inputwriter_mb_s": ours / 1e6,
           "ratio": ours / disk, "files": files, "bytes_written": w.bytes_written, "bytes_skipped": w.bytes_skipped}
    print(table(["case", "time", "unique bytes / s"], [
        ["sequential write of the 512 MiB unique bytes + fsync", f"{plain_s:.2f} s", f"{disk / 1e6:.0f} MB/s"],
        ["InputWriter: 1 GiB, half duplicates, XXH3 + write + fsync", f"{writer_s:.2f} s", f"{ours / 1e6:.0f} MB/s"],
    ]))
    print(f"InputWriter at {ours / disk:.0%} of sequential write speed (target >= 70%); {files} storage files, "
          f"{w.bytes_written / MIB:.0f} MiB written, {w.bytes_skipped / MIB:.0f} MiB of duplicates skipped")
    print("wrote", write("repro_storage", [row]))


if __name__ == "__main__":
    main()
