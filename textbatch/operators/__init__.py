"""Ray Data steps, one concern per file: preflight (the input files checked), read, tokenize (+ template, + texts:
decoding and max_chars), predict (batching + pooling inside) or generate, write; isolation wraps a step so that its
failures are pinned to rows (row_errors names their reasons).

Names are imported on first use, so the pure modules (`batching`, `columns`) load without Ray or JAX.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "check_input": "preflight",
    "BadInputError": "preflight",
    "isolated": "isolation",
    "read_texts": "read",
    "resolve_input": "read",
    "Tokenize": "tokenize",
    "PredictEmbeddings": "predict",
    "GenerateText": "generate",
    "PromptTemplate": "template",
    "EmbeddingParquetDatasink": "write",
    "ResultParquetDatasink": "write",
    "OUTPUT_COLUMNS": "write",
    "read_run_metadata": "write",
    "bucket_lengths": "batching",
    "plan_batches": "batching",
    "require_columns": "columns",
    "MissingColumnError": "columns",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"textbatch.operators.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
