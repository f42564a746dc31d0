"""Text in, results out: documents and queries as text, no embedding function given.

The default model (sentence-transformers/all-MiniLM-L6-v2, no torch) embeds
them. Without internet, point CHROMA_EMBEDDING_MODEL_DIR at a directory filled
by `chroma models fetch --dir DIR` on a machine with internet.
"""

import chroma

client = chroma.get_api()  # Local over in-memory DuckDB
# The model's vectors are L2-normalised: cosine distance suits them.
collection = client.get_or_create_collection("text_search", metadata={"hnsw:space": "cosine"})
collection.add(
    ids=["weather", "sunny", "stadium", "database"],
    documents=[
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
        "An embedding database stores vectors and finds the nearest ones.",
    ],
)

result = collection.query(query_texts=["Is it sunny?", "where are vectors kept"], n_results=2)
for query, ids, distances in zip(["Is it sunny?", "where are vectors kept"], result["ids"], result["distances"]):
    print(f"{query!r}: {ids} at cosine distances {[round(d, 3) for d in distances]}")
assert result["ids"][0][0] == "sunny" and result["ids"][1][0] == "database"
