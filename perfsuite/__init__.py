"""perfsuite: a pytest-driven performance regression suite for diffusion-model inference."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
