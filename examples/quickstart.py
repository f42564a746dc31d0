"""The embedded default in one screen: no server, nothing else running."""

import numpy as np

import chroma

client = chroma.get_api()  # Local over in-memory DuckDB
collection = client.get_or_create_collection("quickstart", metadata={"hnsw:space": "cosine"})

rng = np.random.default_rng(0)
vectors = rng.standard_normal((10_000, 128), dtype=np.float32)
collection.add(
    ids=[f"item-{i}" for i in range(len(vectors))],
    embeddings=vectors,
    metadatas=[{"shard": i % 10, "even": i % 2 == 0} for i in range(len(vectors))],
    documents=[f"document number {i}" for i in range(len(vectors))],
)
print("count:", collection.count())

result = collection.query(query_embeddings=vectors[:2], n_results=3)
for query, (ids, distances) in enumerate(zip(result["ids"], result["distances"])):
    print(f"query {query}: nearest {ids} at cosine distances {np.round(distances, 4).tolist()}")

filtered = collection.query(
    query_embeddings=vectors[:1],
    n_results=3,
    where={"$and": [{"shard": 3}, {"even": False}]},
    where_document={"$contains": "number 1"},
)
print("filtered:", list(zip(filtered["ids"][0], filtered["metadatas"][0])))
