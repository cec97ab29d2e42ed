"""Built registry directories for publish tests: a blob and a descriptor per bundle."""

from __future__ import annotations

import hashlib
from pathlib import Path

import blake3

from runtime.registry.wire import (
    BundleDescriptor,
    Location,
    blob_key,
    descriptor_key,
    encode_pretty,
)

Bundle = tuple[str, str, str, bytes]  # model, version, target, payload


def make_source(root: Path, bundles: list[Bundle]) -> Path:
    """A built registry directory: a blob and a descriptor per bundle."""
    for model, version, target, payload in bundles:
        digest = blake3.blake3(payload).hexdigest()
        blob = root / blob_key(digest)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(payload)
        descriptor = BundleDescriptor(
            id=model,
            version=version,
            target=target,
            hash=digest,
            size_bytes=len(payload),
            location=Location("remote", blob_key(digest)),
            sha256=hashlib.sha256(payload).hexdigest(),
            description=f"{model} model",
            created_at="2026-11-22T08:00:00Z",
        )
        path = root / descriptor_key(model, version, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_pretty(descriptor))
    return root
