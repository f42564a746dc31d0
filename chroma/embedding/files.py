"""Where the default model's files come from, in this order:

1. ``CHROMA_EMBEDDING_MODEL_DIR``: a directory holding the files as published
   (for machines without internet; ``chroma models fetch --dir DIR`` fills one);
2. our cache directory (``$CHROMA_CACHE_DIR``, else ``$XDG_CACHE_HOME/chroma``,
   else ``~/.cache/chroma``), filled by an earlier download;
3. a download from the model's home on the Hugging Face hub (``HF_ENDPOINT``
   when set) at a pinned revision, by ``huggingface_hub``, with progress bars.

Every file is checked against a pinned SHA-256. A download lands in a temporary
directory beside the cache entry and is renamed into place only once every file
has passed, so a killed or corrupt download never leaves a cache entry that
looks valid.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from chroma import errors

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_REVISION = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
MODEL_DIR_VARIABLE = "CHROMA_EMBEDDING_MODEL_DIR"
LOCATION_VARIABLES = (MODEL_DIR_VARIABLE, "CHROMA_CACHE_DIR")
"""Where the model's files are (not settings): kept in the environment of the servers and
workers a process starts, which otherwise get only the CHROMA_<SETTING> variables it chose."""

MODEL_FILES = {
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
}
"""The files the forward pass reads, each with the SHA-256 of its published version."""

_VERIFIED_MARKER = ".verified"
"""Written last into a cache entry: its files passed their checks."""

_NOT_AVAILABLE = (
    "the default embedding model ({name} at revision {revision}) is not available: {reason}. "
    "On a machine without internet, run `chroma models fetch --dir DIR` where there is internet, copy DIR over "
    "and set {variable}=DIR; or fill this machine's cache with `chroma models fetch`; "
    "or pass embeddings=..., or turn the default off with embedding_function='none'"
)


def not_available(reason: str) -> errors.EmbeddingModelUnavailable:
    return errors.EmbeddingModelUnavailable(_NOT_AVAILABLE.format(
        name=MODEL_NAME, revision=MODEL_REVISION, reason=reason, variable=MODEL_DIR_VARIABLE))


def cache_root() -> Path:
    """The directory under which downloaded models are kept."""
    explicit = os.environ.get("CHROMA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "chroma"


def cache_entry(root: Optional[Path] = None) -> Path:
    """The cache directory of the pinned model."""
    return (root or cache_root()) / "models" / MODEL_NAME.replace("/", "--") / MODEL_REVISION


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_files(directory: Path) -> None:
    """Raises EmbeddingModelUnavailable unless every pinned file is in ``directory`` with its SHA-256."""
    for name, expected in MODEL_FILES.items():
        path = directory / name
        if not path.is_file():
            raise not_available(f"{path} is missing")
        actual = sha256_of(path)
        if actual != expected:
            raise not_available(f"{path} has SHA-256 {actual}, expected {expected} (a corrupt, truncated "
                                "or different file)")


def resolve(download: bool = True) -> Path:
    """The directory holding the model's files, downloading them into the cache if need be.

    Raises:
        EmbeddingModelUnavailable: not in CHROMA_EMBEDDING_MODEL_DIR nor the cache, and
            the download failed (offline, a file that fails its check, ...) or was not allowed.
    """
    given = os.environ.get(MODEL_DIR_VARIABLE)
    if given:
        directory = Path(given)
        if not directory.is_dir():
            raise not_available(f"{MODEL_DIR_VARIABLE}={given} is not a directory")
        check_files(directory)
        return directory
    entry = cache_entry()
    if (entry / _VERIFIED_MARKER).is_file():
        return entry
    if not download:
        raise not_available(f"it is not in the cache ({entry})")
    return fetch(entry)


def fetch(target: Optional[Path] = None) -> Path:
    """Downloads the pinned files into ``target`` (default: the cache entry) unless they are there.

    Raises:
        EmbeddingModelUnavailable: the download failed; ``target`` is left as it was.
    """
    target = Path(target) if target is not None else cache_entry()
    if (target / _VERIFIED_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        _download_into(staging)
        shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping
        check_files(staging)
        (staging / _VERIFIED_MARKER).write_text(f"{MODEL_NAME}@{MODEL_REVISION}\n")
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _download_into(directory: Path) -> None:
    try:
        import huggingface_hub
    except ImportError as exc:
        raise errors.MissingDependency(
            f"downloading the default embedding model needs the package {exc.name!r}; pip install huggingface_hub"
        ) from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    if offline:
        raise not_available("HF_HUB_OFFLINE is set, so it cannot be downloaded")
    # Read at call time (huggingface_hub reads it once, at its import).
    endpoint = os.environ.get("HF_ENDPOINT") or None
    for name in MODEL_FILES:
        try:
            huggingface_hub.hf_hub_download(MODEL_NAME, name, revision=MODEL_REVISION, local_dir=directory,
                                            endpoint=endpoint)
        except Exception as exc:  # network, HTTP and file errors alike leave no usable model
            raise not_available(f"downloading {name} failed ({type(exc).__name__}: {exc})") from exc


def _move_into_place(staging: Path, target: Path) -> None:
    """Renames the checked ``staging`` directory to ``target`` in one step.

    An existing target without the marker (an unrelated or earlier partial
    directory given by --dir) keeps its other files: only the model's files are
    replaced, each by a rename, and the marker comes last.
    """
    if not target.exists():
        try:
            os.replace(staging, target)
            return
        except OSError:
            if not target.exists():
                raise
    if (target / _VERIFIED_MARKER).is_file():
        return  # another process finished the same download first
    for name in MODEL_FILES:
        os.replace(staging / name, target / name)
    os.replace(staging / _VERIFIED_MARKER, target / _VERIFIED_MARKER)
