"""Where finished results live: a local directory by default.

`ResultStore` is the whole interface the storage service uses, so an S3-compatible
store (a multipart upload completed on success, aborted on error; get_object with
ranged reads) can replace the local one. Keys are `<tenant>/<job id>/<file name>`:
the tenant is part of every key.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK_BYTES = 1024 * 1024


class ResultStore(Protocol):
    def writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A file to write `key` into, piece by piece: committed whole when the block
        ends without an error, discarded otherwise, so readers never see half a file."""
        ...

    def put(self, key: str, data: bytes) -> None: ...

    def exists(self, key: str) -> bool: ...

    def read_chunks(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]: ...

    def read(self, key: str) -> bytes: ...


class LocalDirectoryStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._inside = str(self.root) + os.sep

    def _path(self, key: str) -> str:
        """The file of `key`; a key that would leave the root (`..`, absolute) is refused.
        Checked on the normalised path, not by resolving links on disk (a syscall per path
        component, four files per job): keys are made by the services from subject-safe
        tenant ids and generated job ids, and only the store writes below its root."""
        path = os.path.normpath(os.path.join(self._inside, key))
        if not path.startswith(self._inside):
            raise ValueError(f"result key {key!r} escapes the store")
        return path

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """A temporary file beside the target, renamed over it once the block succeeds."""
        path = self._path(key)
        directory = os.path.dirname(path)
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        except FileNotFoundError:  # the job's first file: its directory comes first
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
            # No fsync: write + rename survives a killed process (the page cache
            # stays); surviving power loss is the job of a durable object store.
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put(self, key: str, data: bytes) -> None:
        with self.writer(key) as handle:
            handle.write(data)

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def read_chunks(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        with open(self._path(key), "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                yield chunk

    def read(self, key: str) -> bytes:
        return Path(self._path(key)).read_bytes()
