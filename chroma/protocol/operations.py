"""The one table of chroma's remote operations.

Each :class:`Operation` says what a call is, once, for every transport: its name, its
arguments and which of them are vector arrays, the server bounds that apply to it, how its
result is encoded, whether it is idempotent (a read: the HTTP client may send it again on a
connection the server had closed, and a read that got no answer is ``ServerUnavailable``
rather than ``OutcomeUnknown``), and where it lives on each wire (the HTTP route; the Flight
action, put or exchange). The clients (:class:`chroma.api.remote.Remote` and its
transports) send every operation through one call method that reads this table, and both
servers answer it through one dispatch (:mod:`chroma.server.dispatch`) and register their
routes from it; ``tests/test_operations.py`` checks that every row is served.

Each argument is declared once, by name, in :data:`ARGUMENTS` (its JSON type, a one-line
description, the least value of an int), or in its row's ``declared`` where one operation
takes it differently; the HTTP server generates its body schemas from these declarations.

Adding an operation: see ``docs/ARCHITECTURE.md``, "Where to add".
"""

from __future__ import annotations

from typing import Any, List, Literal, NamedTuple, Optional, Union

from chroma.types import GET_INCLUDE, QUERY_INCLUDE, Metadata, Where, WhereDocument

# How a result is encoded: the value a client's call method gives back.
JSON = "json"
"""A JSON value (an object of named fields, a list of collections)."""
COLLECTION = "collection"
"""A collection, ``{"id", "name", "metadata"}``."""
COLLECTIONS = "collections"
"""A list of collections."""
NOTHING = "nothing"
"""``{}``: the call's success is all there is."""
GET_RESULT = "get_result"
"""A :class:`chroma.types.GetResult`: ids plus included columns (embeddings as float32 arrays)."""
QUERY_RESULT = "query_result"
"""A :class:`chroma.types.QueryResult`: one list per query, nearest first."""

# How a call travels over Flight.
ACTION = "action"
"""A Flight action: JSON arguments, one JSON result."""
PUT = "put"
"""DoPut: the rows stream to the server (``chroma.flight_protocol``)."""
EXCHANGE = "exchange"
"""DoExchange: an argument streams to the server, the result streams back."""

# Server bounds (chroma.server.bounds.Bounds) and what they bound.
BATCH = "max_batch_size"
N_RESULTS = "max_n_results"
RESPONSE_ROWS = "max_response_rows"


class Argument(NamedTuple):
    """How an argument travels: the HTTP body's schema, and what a client may send."""

    type: Any
    """The type of its JSON value (a typing annotation over JSON's types). Nothing converts a
    value to it: Local checks every value, so "10" for an int is Local's InvalidArgument."""
    description: str
    """One line, for the HTTP documentation."""
    minimum: Optional[int] = None
    """The least value of an int (the greatest is the int64 one of the store)."""


STRINGS = Union[List[str], str]
"""A list of strings; one string is a list of one."""
SELECTED_IDS = Optional[STRINGS]
"""Ids that select (get, delete): null selects by the filters alone."""

ARGUMENTS: dict[str, Argument] = {
    "collection_id": Argument(str, "The collection's id (a UUID)."),
    "name": Argument(str, "The collection's name: 3-63 characters of [A-Za-z0-9._-], starting and ending "
                          "with a letter or digit."),
    "metadata": Argument(Optional[Metadata], "Collection metadata (str, int, float or bool values; hnsw:* keys "
                                             "set the index)."),
    "get_or_create": Argument(bool, "Return the existing collection instead of a 409 CollectionExists."),
    "ids": Argument(STRINGS, "Non-empty list of distinct string ids."),
    "embeddings": Argument(Optional[Union[List[Optional[List[float]]], List[float]]],
                           "One vector per id (a null row keeps the item's vector; one list of numbers is "
                           "one row)."),
    "metadatas": Argument(Optional[Union[List[Optional[Metadata]], Metadata]],
                          "One metadata object (or null) per id."),
    "documents": Argument(Optional[Union[List[Optional[str]], str]], "One string (or null) per id."),
    "embed_missing": Argument(bool, "Whether the server's default model embeds documents given without "
                                    "embeddings (false: store them as documents only)."),
    "where": Argument(Optional[Where], "Metadata filter ($eq $ne $gt $gte $lt $lte $in $nin $and $or)."),
    "where_document": Argument(Optional[WhereDocument], "Document filter ($contains $not_contains $and $or)."),
    "limit": Argument(Optional[int], "Most items to return, or null for all.", minimum=0),
    "offset": Argument(Optional[int], "Items to skip, or null.", minimum=0),
    "include": Argument(List[Literal[QUERY_INCLUDE]], "What the answer carries besides the ids."),
    "query_embeddings": Argument(Optional[Union[List[List[float]], List[float]]],
                                 "The query vectors (one list of numbers is one query)."),
    "query_texts": Argument(Optional[STRINGS], "Instead of query_embeddings: texts the server's default "
                                           "embedding model embeds (one string is one query)."),
    "n_results": Argument(int, "Results per query (at most the server's max_n_results).", minimum=1),
}
"""Every argument of the table, by name, as most operations take it (a row's ``declared`` says
where one takes it otherwise)."""


class Operation(NamedTuple):
    name: str
    """The operation's name: the Flight action or command ``op``, the last part of its route."""
    method: str
    """The method of ``chroma.api.local.Local`` that a server calls."""
    arguments: tuple[str, ...]
    """Its arguments, in the order of that method."""
    result: str
    """How its result is encoded (JSON, COLLECTION, COLLECTIONS, NOTHING, GET_RESULT, QUERY_RESULT)."""
    idempotent: bool
    """Whether sending it twice is harmless (a read)."""
    http: tuple[str, str]
    """The HTTP method and path below ``/api/v1`` (``{argument}`` in a path is that argument)."""
    flight: str = ACTION
    """How it travels over Flight (ACTION, PUT, EXCHANGE)."""
    arrays: tuple[str, ...] = ()
    """Arguments that carry vectors (float32 arrays: binary over HTTP, Arrow over Flight)."""
    bounds: tuple[tuple[str, str], ...] = ()
    """(bound, argument) pairs the server checks before the call (BATCH: the argument's length)."""
    open: bool = False
    """Served without a token: it reveals no stored data."""
    answers: tuple[int, ...] = ()
    """HTTP statuses that carry an answer rather than an error (ready: 503 when not writable)."""
    summary: str = ""
    """What it does, for the Flight action list and the HTTP documentation."""
    defaults: tuple[tuple[str, object], ...] = ()
    """The values of arguments a call leaves out (any other: None)."""
    field: Optional[str] = None
    """A JSON result that is one value travels as ``{field: value}``."""
    declared: tuple[tuple[str, Argument], ...] = ()
    """Its arguments that it takes otherwise than :data:`ARGUMENTS` declares them."""
    body: str = ""
    """The name of its HTTP body's schema (empty: its name in CamelCase); operations that name
    one schema take the same body."""


def _write(name: str, summary: str) -> Operation:
    # embed_missing: whether the server's default model embeds documents that come without
    # embeddings; a body without it (curl) asks for the model
    return Operation(name, "write_from_remote",
                     ("collection_id", "ids", "embeddings", "metadatas", "documents", "embed_missing"),
                     NOTHING, False, ("POST", f"/collections/{{collection_id}}/{name}"), PUT,
                     arrays=("embeddings",), bounds=((BATCH, "ids"),), summary=summary,
                     defaults=(("embed_missing", True),), body="Records")


HEARTBEAT = Operation("heartbeat", "heartbeat", (), JSON, True, ("GET", "/heartbeat"), open=True, field="heartbeat",
                      summary="The server's clock in nanoseconds (no token needed).")
VERSION = Operation("version", "version", (), JSON, True, ("GET", "/version"), field="version",
                    summary="The server's chroma version.")
LIMITS = Operation("limits", "limits", (), JSON, True, ("GET", "/limits"),
                   summary="The server's bounds (0 means none): request and JSON bytes, batch size, n_results, "
                   "response rows.")
READY = Operation("ready", "ready", (), JSON, True, ("GET", "/ready"), answers=(503,),
                  summary="Whether the store takes writes (else HTTP 503, same body) and what is loaded "
                  "(chroma.types.Readiness).")
LIST_COLLECTIONS = Operation("list_collections", "list_collections", (), COLLECTIONS, True,
                             ("GET", "/collections"), summary="Every collection, sorted by name.")
CREATE_COLLECTION = Operation("create_collection", "create_collection", ("name", "metadata", "get_or_create"),
                              COLLECTION, False, ("POST", "/collections"), defaults=(("get_or_create", False),),
                              summary="Creates a collection (CollectionExists unless get_or_create).")
GET_COLLECTION = Operation("get_collection", "get_collection", ("name",), COLLECTION, True,
                           ("GET", "/collections/{name}"), summary="The collection named name (CollectionNotFound).")
DELETE_COLLECTION = Operation("delete_collection", "delete_collection", ("name",), NOTHING, False,
                              ("DELETE", "/collections/{name}"),
                              summary="Deletes the collection named name and its items (CollectionNotFound).")
RESET = Operation("reset", "reset", (), NOTHING, False, ("POST", "/reset"),
                  summary="Deletes everything (ResetDisabled unless the server's allow_reset is set).")
MODIFY = Operation("modify", "_modify", ("collection_id", "name", "metadata"), COLLECTION, False,
                   ("PUT", "/collections/{collection_id}"),
                   summary="Renames the collection and/or replaces its metadata.",
                   declared=(("name", Argument(Optional[str], "New name, or null to keep it.")),
                             ("metadata", Argument(Optional[Metadata], "Replacement metadata, or null to keep it."))),
                   body="ModifyCollection")
COUNT = Operation("count", "_count", ("collection_id",), JSON, True, ("GET", "/collections/{collection_id}/count"),
                  field="count", summary="The number of items.")
ADD = _write("add", "Adds items (DuplicateIDError if an id exists; nothing of the batch is written).")
UPSERT = _write("upsert", "Adds new ids, updates existing ones.")
UPDATE = _write("update", "Changes existing items (IDNotFoundError if an id is missing; nothing is changed).")
DELETE = Operation("delete", "_delete", ("collection_id", "ids", "where", "where_document"), NOTHING, False,
                   ("POST", "/collections/{collection_id}/delete"), bounds=((BATCH, "ids"),),
                   summary="Deletes the items matching every given argument (at least one is needed).",
                   declared=(("ids", Argument(SELECTED_IDS, "Ids to delete (unknown ids are ignored).")),),
                   body="DeleteRecords")
GET = Operation("get", "_get", ("collection_id", "ids", "where", "where_document", "limit", "offset", "include"),
                GET_RESULT, True, ("POST", "/collections/{collection_id}/get"), EXCHANGE,
                bounds=((BATCH, "ids"), (RESPONSE_ROWS, "limit")),
                defaults=(("include", ("metadatas", "documents")),),
                summary="Items by id (in the order asked) or by filter (in insertion order).",
                declared=(("ids", Argument(SELECTED_IDS, "Ids to fetch, in this order; null for all (insertion "
                                                         "order).")),
                          ("include", Argument(List[Literal[GET_INCLUDE]], "What the answer carries besides "
                                                                           "the ids."))),
                body="GetRecords")
QUERY = Operation("query", "_query", ("collection_id", "query_embeddings", "query_texts", "n_results", "where",
                                      "where_document", "include"),
                  QUERY_RESULT, True, ("POST", "/collections/{collection_id}/query"), EXCHANGE,
                  arrays=("query_embeddings",),
                  bounds=((BATCH, "query_embeddings"), (BATCH, "query_texts"), (N_RESULTS, "n_results"),
                          (RESPONSE_ROWS, "n_results")),
                  defaults=(("n_results", 10), ("include", ("metadatas", "documents", "distances"))),
                  summary="The n_results nearest items to each query embedding (or text), nearest first.",
                  body="QueryRecords")

OPERATIONS: dict[str, Operation] = {operation.name: operation for operation in (
    HEARTBEAT, VERSION, LIMITS, READY, LIST_COLLECTIONS, CREATE_COLLECTION, GET_COLLECTION, DELETE_COLLECTION,
    RESET, MODIFY, COUNT, ADD, UPSERT, UPDATE, DELETE, GET, QUERY)}
"""Every remote operation, by name."""


def path_arguments(operation: Operation) -> tuple[str, ...]:
    """The arguments that travel in the operation's HTTP path."""
    return tuple(name for name in operation.arguments if f"{{{name}}}" in operation.http[1])


def of_flight_action(name: str) -> Optional[Operation]:
    """The operation a Flight action of that name calls, or None: every ACTION operation, and the
    EXCHANGE ones (get, query), which a client sends as an action when the call is small."""
    operation = OPERATIONS.get(name)
    return operation if operation is not None and operation.flight in (ACTION, EXCHANGE) else None


def declaration(operation: Operation, name: str) -> Argument:
    """How ``operation`` takes its argument ``name``."""
    for declared, argument in operation.declared:
        if declared == name:
            return argument
    return ARGUMENTS[name]


def body_arguments(operation: Operation) -> tuple[str, ...]:
    """The arguments that travel in the operation's HTTP body (vector arrays too): those not in
    its path; a GET or a DELETE has no body."""
    if operation.http[0] in ("GET", "DELETE"):
        return ()
    in_path = path_arguments(operation)
    return tuple(name for name in operation.arguments if name not in in_path)


def body_schema(operation: Operation) -> str:
    """The name of the operation's HTTP body schema."""
    return operation.body or "".join(part.title() for part in operation.name.split("_"))
