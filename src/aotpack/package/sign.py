"""``sign``: add a signature to a package file, in place and atomically. The write
side of signing, apart from the keys and the verification that reading needs
(signing.py), so that the reader and the writer never import each other.
"""

from __future__ import annotations

import json
import os

from . import format as fmt
from .signing import _CONTEXT, _private_key, key_id

__all__ = ["sign"]


def sign(path: str | os.PathLike, key) -> str:
    """Sign the package at ``path`` with private ``key`` (a key file or an
    Ed25519PrivateKey), in place and atomically; returns the key id.

    Every member is verified first (a damaged package is never signed). A signature by
    the same key is replaced; signatures by other keys stay.
    """
    import base64

    from .reader import PackageReader
    from .writer import locked, write_members

    private = _private_key(key)
    kid = key_id(private.public_key())
    path = os.fspath(path)
    with locked(path), PackageReader(path) as r:
        r.verify()
        blob = r.read(fmt.MANIFEST)
        sigs = [s for s in r.signatures if s["key_id"] != kid]
        sigs.append({"algorithm": "ed25519", "key_id": kid,
                     "signature": base64.b64encode(private.sign(_CONTEXT + blob)).decode()})
        doc = json.dumps({"signatures": sigs}, indent=1).encode()
        members = [(n, r.view(n)) for n in r.names() if n not in (fmt.MANIFEST, fmt.SIGNATURES)]
        write_members(path, [(fmt.MANIFEST, blob), *members, (fmt.SIGNATURES, doc)])
    return kid
