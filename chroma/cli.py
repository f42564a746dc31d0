"""The ``chroma`` command (also ``python -m chroma``).

    chroma run [--impl fastapi|flight|both] [--host 127.0.0.1] [--port PORT]
               [--flight-port PORT] [--path DIR] [--db NAME]
               [--tls-certfile FILE --tls-keyfile FILE]
    chroma worker [--concurrency N] [--loglevel LEVEL]
    chroma bench [--quick] [--combinations API-DB-INDEX,...] [...]   (see chroma.bench)
    chroma models fetch [--dir DIR]

starts a server: HTTP (``chroma.server.FastAPI``, the default), Arrow Flight
(``chroma.server.ArrowFlight``) or both over one database, prints one line
``chroma server listening on URL`` per address, and serves until SIGTERM or
SIGINT (Ctrl-C); then it takes no new call, lets running ones finish within
``shutdown_grace`` seconds (``CHROMA_SHUTDOWN_GRACE``, default 30; calls still
running then are cut off and fail with ``OutcomeUnknown``), closes the database
(everything acknowledged is on disk with ``--path``) and exits with status 0.
With ``--tls-certfile`` and ``--tls-keyfile`` (settings ``server_tls_certfile``,
``server_tls_keyfile``) it serves ``https://`` and ``grpc+tls://`` instead.
Other settings (``auth_token``, ``allow_reset``, ``max_request_bytes``,
``max_batch_size``, ``max_n_results``, ``max_response_rows``, ``cors_origins``, ...) come from the
``CHROMA_<SETTING>`` environment variables.

``chroma models fetch`` downloads the default embedding model (pinned
revision, every file checked against its SHA-256) into our cache, or into DIR
for a machine without internet (there: ``CHROMA_EMBEDDING_MODEL_DIR=DIR``).

``chroma worker`` runs a Celery worker for ``api_impl="celery"`` clients
(``chroma.worker``), configured by the same ``CHROMA_*`` variables as they are
(broker, result backend, the shared DB, the default embedding function).
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys
from typing import Optional, Sequence

import chroma
from chroma import errors, registry

PORTS = {"http": 8000, "flight": 8815}
"""The default port of each transport."""
HTTP_PORT, FLIGHT_PORT = PORTS["http"], PORTS["flight"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chroma", description="chroma, the embedding database.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="serve the API over HTTP (docs at /docs) and/or Arrow Flight",
        description="Serve the HTTP API under /api/v1 (interactive docs at /docs), the Arrow Flight API, or both. "
        "Other settings come from CHROMA_<SETTING> environment variables, e.g. CHROMA_AUTH_TOKEN, "
        "CHROMA_ALLOW_RESET, CHROMA_CORS_ORIGINS.",
    )
    run.add_argument("--impl", choices=list(registry.SERVER_IMPLS), default="fastapi",
                     help="fastapi: HTTP (default); flight (or arrowflight): Arrow Flight (grpc://); both: HTTP "
                     "and Flight over one database")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=None,
                     help=f"port of the chosen server (default {HTTP_PORT} for HTTP, {FLIGHT_PORT} for Flight; "
                     "with --impl both, the HTTP port); 0 picks a free one")
    run.add_argument("--flight-port", type=int, default=None,
                     help=f"port of the Flight server (default {FLIGHT_PORT}); --port also sets it with --impl flight")
    run.add_argument("--path", default=None, metavar="DIR",
                     help="persistent directory (implies --db persistent_duckdb)")
    run.add_argument("--db", default=None, metavar="NAME",
                     help=f"database implementation: {', '.join(registry.DB_IMPLS)} "
                     "(default duckdb, in memory; persistent_duckdb with --path)")
    run.add_argument("--tls-certfile", default=None, metavar="FILE",
                     help="serve TLS (https://, grpc+tls://) with this PEM certificate (chain); needs --tls-keyfile")
    run.add_argument("--tls-keyfile", default=None, metavar="FILE", help="the PEM private key of --tls-certfile")
    work = commands.add_parser(
        "worker",
        help="run a Celery worker for api_impl='celery' clients",
        description="Run a Celery worker that takes the bulk writes, index builds and large query batches of "
        "api_impl='celery' clients. It reads the same CHROMA_<SETTING> variables as they do: "
        "CHROMA_CELERY_BROKER_URL, CHROMA_CELERY_RESULT_BACKEND, CHROMA_DB_IMPL=clickhouse, "
        "CHROMA_CLICKHOUSE_HOST/PORT, CHROMA_EMBEDDING_FUNCTION.",
    )
    work.add_argument("--concurrency", type=int, default=1,
                      help="tasks run at once (default 1: one process; more: a pool of that many processes)")
    work.add_argument("--loglevel", default="info", help="Celery's log level (default info)")
    work.add_argument("--name", default=None, help="the worker's node name (default chroma-<pid>@<host>)")
    models = commands.add_parser(
        "models",
        help="manage the default embedding model's files",
        description="The default embedding model (sentence-transformers/all-MiniLM-L6-v2) for documents and "
        "query texts given without an embedding function.",
    )
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="SUBCOMMAND")
    fetch = model_commands.add_parser(
        "fetch",
        help="download the model now (for Docker images and machines without internet)",
        description="Download the model's files at the pinned revision, each checked against its pinned SHA-256, "
        "into the cache (default) or DIR. Then copy DIR to a machine without internet and set "
        "CHROMA_EMBEDDING_MODEL_DIR=DIR there. HF_ENDPOINT selects another hub or mirror.",
    )
    fetch.add_argument("--dir", default=None, metavar="DIR", help="directory to fill instead of the cache")
    commands.add_parser("bench", help="benchmark API/DB/index combinations (chroma bench --help)", add_help=False)
    return parser


def run(impl: str, host: str, port: Optional[int], flight_port: Optional[int], path: Optional[str],
        db: Optional[str], tls_certfile: Optional[str] = None, tls_keyfile: Optional[str] = None) -> None:
    settings = {"server_impl": impl, "server_host": host,
                "server_tls_certfile": tls_certfile, "server_tls_keyfile": tls_keyfile}
    # --port is the port of the server's first transport; --flight-port the Flight one's
    given = {"flight": flight_port}
    first = registry.check("server_impl", impl).serves[0]
    given[first] = port if port is not None else given.get(first)
    for transport in registry.SERVER_IMPLS[impl].serves:
        settings[f"server_{transport}_port"] = PORTS[transport] if given.get(transport) is None else given[transport]
    if path is not None:
        settings["persist_directory"] = path
        settings["db_impl"] = db or "persistent_duckdb"
    elif db is not None:
        settings["db_impl"] = db
    chroma.configure(**settings)
    faulthandler.enable()  # a crash in native code still says where, on stderr
    server = chroma.get_server()
    server.run(on_listening=_announce)
    print("chroma server stopped", flush=True)
    if server.left_running:
        # Calls cut off at the end of the grace period still run in native code; waiting for
        # them at exit would hold the process as long as they take.
        sys.stderr.flush()
        os._exit(0)


def _announce(urls: list[str]) -> None:
    for url in urls:
        print(f"chroma server listening on {url}", flush=True)


def worker(concurrency: int, loglevel: str, name: Optional[str]) -> None:
    try:
        from chroma import worker as celery_worker
    except ModuleNotFoundError as exc:
        raise errors.MissingDependency(
            f"chroma worker needs the package {exc.name!r}, which is not installed; "
            "install it with: pip install 'chroma[server]'"
        ) from None
    from chroma.config import current_settings

    from chroma import embedding

    settings = current_settings()
    embedding.ensure_available_for(settings.embedding_function)  # fail at start-up, not at the first task
    app = celery_worker.make_app(settings)
    pool = ["--pool=solo"] if concurrency <= 1 else ["--pool=prefork", f"--concurrency={concurrency}"]
    app.worker_main(["worker", *pool, f"--loglevel={loglevel}", "--without-gossip", "--without-mingle",
                     "--without-heartbeat", "-n", name or f"chroma-{os.getpid()}@%h"])


def fetch_model(directory: Optional[str]) -> None:
    from pathlib import Path

    from chroma.embedding import MODEL_DIR_VARIABLE, MODEL_NAME, MODEL_REVISION, files

    target = files.fetch(Path(directory) if directory else None)
    print(f"{MODEL_NAME} at revision {MODEL_REVISION} is in {target}", flush=True)
    if directory:
        print(f"use it with {MODEL_DIR_VARIABLE}={target.resolve()}", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from chroma import bench

        return bench.main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            run(args.impl, args.host, args.port, args.flight_port, args.path, args.db, args.tls_certfile,
                args.tls_keyfile)
        elif args.command == "worker":
            worker(args.concurrency, args.loglevel, args.name)
        elif args.command == "models":
            fetch_model(args.dir)
    except (errors.ChromaError, OSError) as exc:
        print(f"chroma: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
