"""Preference feedback: backends, the labeler that drives them, and the query store.

The usual entry points::

    backend = make_backend("openai:gpt-4o")
    with Labeler(backend, task, QueryStore(), LabelerConfig(max_in_flight=16)) as labeler:
        results = labeler.label(pairs)
"""

from rlvlmf.feedback.base import Answer, Backend, BackendError, FramePair, Label, TransientBackendError
from rlvlmf.feedback.labeler import LabeledQuery, Labeler, LabelerConfig, LabelerStats
from rlvlmf.feedback.registry import BackendInfo, BackendSpec, list_backends, make_backend, parse_spec
from rlvlmf.feedback.store import QueryStore, StoredQuery, frame_hash, query_key
from rlvlmf.feedback.summary import StoreStats

__all__ = [
    "Answer",
    "Backend",
    "BackendError",
    "BackendInfo",
    "BackendSpec",
    "FramePair",
    "Label",
    "LabeledQuery",
    "Labeler",
    "LabelerConfig",
    "LabelerStats",
    "QueryStore",
    "StoreStats",
    "StoredQuery",
    "TransientBackendError",
    "frame_hash",
    "list_backends",
    "make_backend",
    "parse_spec",
    "query_key",
]
