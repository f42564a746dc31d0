"""The batches of the durability tests, shared by the test and its writer subprocesses,
so both derive the same vectors from a batch number."""

import numpy as np

BATCH_SIZE = 500
DIM = 16


def batch_ids(batch: int) -> list[str]:
    return [f"b{batch}-{row}" for row in range(BATCH_SIZE)]


def batch_embeddings(batch: int) -> np.ndarray:
    return np.random.default_rng(1000 + batch).standard_normal((BATCH_SIZE, DIM)).astype(np.float32)


def batch_metadatas(batch: int) -> list[dict]:
    return [{"batch": batch, "row": row} for row in range(BATCH_SIZE)]
