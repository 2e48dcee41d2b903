"""An attention processor of our own, gated as a perfsuite technique (see README.md)."""

from custom_technique.processor import ChunkedSDPAProcessor
from custom_technique.technique import CHUNKED_ATTN

__all__ = ["CHUNKED_ATTN", "ChunkedSDPAProcessor"]
