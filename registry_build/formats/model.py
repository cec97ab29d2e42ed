"""What a format reader learns about one model from its headers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.names import UNIVERSAL


@dataclass(frozen=True)
class ModelHeader:
    """A model described from its own headers.

    ``metadata`` holds ``bundles.json`` metadata keys (architecture, quantization,
    parameter_count, format, context_length, license) plus format details (opset, dtypes, ...);
    ``notes`` say what was left out and why (e.g. a header past the read budget).
    """

    format: str
    model_type: str
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    version: str | None = None
    platforms: tuple[str, ...] = (UNIVERSAL,)
    notes: tuple[str, ...] = ()
