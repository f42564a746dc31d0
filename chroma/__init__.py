"""chroma: an embedding database, embedded in your process or behind a server.

    import chroma
    client = chroma.get_api()
    collection = client.create_collection("docs")
    collection.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]])
    collection.query(query_embeddings=[[0.9, 0.1]], n_results=1)

Configuration: ``chroma.configure(**settings)``, else ``CHROMA_<SETTING>``
environment variables, else defaults (see ``chroma.config.Settings``).
"""

from chroma import errors
from chroma.api import API
from chroma.collection import Collection
from chroma.config import Settings, configure, current_settings
from chroma.db import DB
from chroma.factory import Client, EphemeralClient, HttpClient, PersistentClient, get_api, get_db, get_server
from chroma.server import Server
from chroma.types import GetResult, QueryResult

__version__ = "0.1.0"

__all__ = [
    "API",
    "DB",
    "Server",
    "Collection",
    "Client",
    "EphemeralClient",
    "HttpClient",
    "PersistentClient",
    "GetResult",
    "QueryResult",
    "Settings",
    "configure",
    "current_settings",
    "errors",
    "get_api",
    "get_db",
    "get_server",
]
