"""The ``chroma`` command (also ``python -m chroma``).

    chroma run [--host 127.0.0.1] [--port 8000] [--path DIR] [--db NAME]
    chroma bench [--quick] [--combinations API-DB-INDEX,...] [...]   (see chroma.bench)

starts the HTTP server (``chroma.server.FastAPI``) and serves until SIGTERM or
SIGINT (Ctrl-C); then it lets running requests finish, closes the database
(everything acknowledged is on disk with ``--path``) and exits with status 0.
Other settings (``auth_token``, ``allow_reset``, ``max_request_bytes``,
``max_batch_size``, ``max_n_results``, ``cors_origins``, ...) come from the
``CHROMA_<SETTING>`` environment variables.
"""

from __future__ import annotations

import argparse
import faulthandler
import sys
from typing import Optional, Sequence

import chroma
from chroma import errors, registry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chroma", description="chroma, the embedding database.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="serve the HTTP API (docs at /docs)",
        description="Serve the HTTP API under /api/v1 (interactive docs at /docs). Other settings come from "
        "CHROMA_<SETTING> environment variables, e.g. CHROMA_AUTH_TOKEN, CHROMA_ALLOW_RESET, CHROMA_CORS_ORIGINS.",
    )
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks a free one)")
    run.add_argument("--path", default=None, metavar="DIR",
                     help="persistent directory (implies --db persistent_duckdb)")
    run.add_argument("--db", default=None, metavar="NAME",
                     help=f"database implementation: {', '.join(registry.DB_IMPLS)} "
                     "(default duckdb, in memory; persistent_duckdb with --path)")
    commands.add_parser("bench", help="benchmark API/DB/index combinations (chroma bench --help)", add_help=False)
    return parser


def run(host: str, port: int, path: Optional[str], db: Optional[str]) -> None:
    settings = {"server_host": host, "server_http_port": port}
    if path is not None:
        settings["persist_directory"] = path
        settings["db_impl"] = db or "persistent_duckdb"
    elif db is not None:
        settings["db_impl"] = db
    chroma.configure(**settings)
    faulthandler.enable()  # a crash in native code still says where, on stderr
    server = chroma.get_server()
    listen = getattr(server, "listen", None)
    if listen is not None:
        host, port = listen()
    print(f"chroma server listening on http://{host}:{port}", flush=True)
    server.run()
    print("chroma server stopped", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from chroma import bench

        return bench.main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            run(args.host, args.port, args.path, args.db)
    except (errors.ChromaError, OSError) as exc:
        print(f"chroma: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
