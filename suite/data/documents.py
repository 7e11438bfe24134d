"""Documents for `tokenize`, read one at a time and in bounded pieces: text files (one document
each, read PIECE_BYTES at a time), .jsonl (one per line, the `key` field) and .parquet (one per
row, about PARQUET_BATCH_BYTES of rows at a time). A long document is cut into pieces just
before a space between two words (`pieces`), so that a byte-level tokenizer gives the very ids
it gives the whole document while memory does not grow with its size (levanter#568). A .jsonl
value or .parquet cell must be a string: anything else is refused naming the file, row and
key; nulls are skipped and counted."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.data import files as datafiles
from suite.data.sources import TEXT_SUFFIXES, DataError, text_files

DOC_SUFFIXES = (".jsonl", ".parquet")  # read as many documents, by the `field` key/column


PIECE_BYTES = 1 << 18  # a document longer than this is encoded in pieces of at most this


PARQUET_BATCH_BYTES = 1 << 26  # .parquet rows read at once: about 64 MiB of them


LOOKAHEAD = 8  # bytes past a cut that must be read before cutting: the next character


@dataclass
class Document:
    name: str  # file, file:line or file:row
    bytes: int  # UTF-8 bytes of the text as stored, for bits per byte
    pieces: Iterable[str]  # the text, in pieces of at most PIECE_BYTES bytes (`pieces`)


@dataclass
class Nulls:
    """Null values of the text key or column: skipped, counted, the first LISTED named."""

    count: int = 0
    names: list[str] = field(default_factory=list)

    def add(self, name: str) -> None:
        """Count a null at `name` (file:row)."""
        self.count += 1
        if len(self.names) < datafiles.LISTED:
            self.names.append(name)


def sources(source: str) -> tuple[list[Path], dict[str, Any]]:
    """Files to read: a file, a glob, or a folder's text, .jsonl and .parquet files; never a
    dot-file or a file that is not text (counted in the record)."""
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix.lower() not in DOC_SUFFIXES and (why := datafiles.not_text(path)):
            raise DataError(f"{path}: not text ({why} of the first {datafiles.TEXT_PROBE}); "
                            "allowed: UTF-8 text, .jsonl or .parquet")
        return [path], {"read": 1, "skipped": {}}
    found, rec = text_files(source, TEXT_SUFFIXES + DOC_SUFFIXES, binary=(".parquet",))
    if not found:
        raise DataError(f"{source}: no such file or folder, and no file matches it as a glob"
                        + (f" ({read_text_summary(rec)})" if rec["skipped"] else ""))
    return found, rec


def cut(buf: bytes | bytearray, limit: int) -> int:
    """Where to cut UTF-8 `buf` (longer than `limit`) so that the first piece has at most
    `limit` bytes: just before a space that has a non-space character on either side, the last
    one within the limit. Byte-level pre-tokenizers (GPT-2's and Llama 3's regex) never join
    such a space to what precedes it, so the pieces' ids joined are the whole text's ids.
    With no such space, the last character boundary within the limit."""
    i = buf.rfind(b" ", 1, limit + 1)
    while i > 0:
        if i + 1 < len(buf) and not _char_before(buf, i).isspace() and \
                not _char_after(buf, i + 1).isspace():
            return i
        i = buf.rfind(b" ", 1, i)
    i = limit
    while i > 1 and buf[i] & 0xC0 == 0x80:  # a continuation byte: inside a character
        i -= 1
    return i


def _char_before(buf: bytes | bytearray, i: int) -> str:
    j = i - 1
    while j > 0 and buf[j] & 0xC0 == 0x80 and i - j < 4:
        j -= 1
    return bytes(buf[j:i]).decode("utf-8", "replace")[-1:]


def _char_after(buf: bytes | bytearray, i: int) -> str:
    return bytes(buf[i : i + 4]).decode("utf-8", "replace")[:1]


def byte_pieces(chunks: Iterable[bytes], limit: int | None = None) -> Iterator[bytes]:
    """The bytes of `chunks` joined, cut (`cut`) into pieces of at most `limit` (PIECE_BYTES)
    bytes; holds at most one chunk and one piece. Yields at least one piece (b"" for none)."""
    limit = limit or PIECE_BYTES
    buf, gave = bytearray(), False
    for chunk in chunks:
        buf += chunk
        while len(buf) >= limit + LOOKAHEAD:
            at = cut(buf, limit)
            yield bytes(buf[:at])
            del buf[:at]
            gave = True
    while len(buf) > limit:
        at = cut(buf, limit)
        yield bytes(buf[:at])
        del buf[:at]
        gave = True
    if buf or not gave:
        yield bytes(buf)


def pieces(text: str, limit: int | None = None) -> Iterator[str]:
    """`text` in pieces of at most `limit` (PIECE_BYTES) UTF-8 bytes (`cut`); a short text is
    one piece."""
    limit = limit or PIECE_BYTES
    if len(text) * 4 <= limit:  # at most 4 bytes a character: no need to look
        yield text
        return
    for piece in byte_pieces([text.encode("utf-8")], limit):
        yield piece.decode("utf-8")


def _file_pieces(path: Path) -> Iterator[str]:
    """A text file read PIECE_BYTES at a time, in pieces; bytes that are not UTF-8 become
    U+FFFD, as before (its first TEXT_PROBE bytes were checked to be text)."""
    limit = PIECE_BYTES
    try:
        with open(path, "rb") as f:
            for piece in byte_pieces(iter(lambda: f.read(limit), b""), limit):
                yield piece.decode("utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"{path}: cannot be read: {e.strerror or e}") from e


def documents(paths: list[Path], key: str, nulls: Nulls | None = None) -> Iterator[Document]:
    """Every document of `paths`, in order. A .jsonl value or .parquet cell under `key` must be
    a string; a null is skipped (counted in `nulls`). Raises DataError naming the file, line
    or row and the key for anything else, and for a file that cannot be read."""
    nulls = nulls if nulls is not None else Nulls()
    for f in paths:
        try:
            if f.suffix.lower() == ".jsonl":
                yield from _jsonl_documents(f, key, nulls)
            elif f.suffix.lower() == ".parquet":
                yield from _parquet_documents(f, key, nulls)
            else:
                yield Document(str(f), f.stat().st_size, _file_pieces(f))
        except OSError as e:
            raise DataError(f"{f}: cannot be read: {e.strerror or e}") from e


def _jsonl_documents(f: Path, key: str, nulls: Nulls) -> Iterator[Document]:
    with open(f, "rb") as lines:
        for i, raw in enumerate(lines, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{f}:{i}: not UTF-8 at byte {e.start} of the line; JSON "
                                "Lines are UTF-8 text") from None
            if line.strip():
                try:
                    value = json.loads(line)[key]
                except (ValueError, KeyError, TypeError, IndexError) as e:
                    raise DataError(f"{f}:{i}: no string under key {key!r} ({type(e).__name__})"
                                    "; --field names the key that holds the text") from None
                if (doc := _document(f"{f}:{i}", value, f"key {key!r}", nulls)) is not None:
                    yield doc


def _document(name: str, value: Any, where: str, nulls: Nulls) -> Document | None:
    """The one rule for a .jsonl value and a .parquet cell: a string is a document, a null is
    skipped and counted, anything else (a number, a list, bytes) is refused: turned into text
    it trained on "0" and reprs."""
    if value is None:
        nulls.add(name)
        return None
    if not isinstance(value, str):
        shown = repr(value)
        raise DataError(f"{name}: {where} holds {type(value).__name__} "
                        f"({shown[:40] + '...' if len(shown) > 40 else shown}), not text; "
                        "allowed: a string (a null is skipped and counted)")
    return Document(name, len(value.encode("utf-8")), pieces(value))


def rows_per_batch(table: Any) -> int:
    """Rows of a .parquet file read at once: 1,024, or fewer when rows are large (bytes per row
    from the file's metadata, as encoded: repeated values count once), so that a batch holds
    about PARQUET_BATCH_BYTES whatever the documents' size: 1,024 rows of 40 MB documents
    would be 40 GB."""
    meta = table.metadata
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    per_row = sum(g.total_byte_size for g in groups) / max(1, sum(g.num_rows for g in groups))
    return max(1, min(1024, int(PARQUET_BATCH_BYTES // max(per_row, 1.0))))


def _parquet_documents(f: Path, key: str, nulls: Nulls) -> Iterator[Document]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(f)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{f}: not a readable Parquet file ({e})") from None
    with table:
        if key not in table.schema_arrow.names:
            raise DataError(f"{f}: no column {key!r}; it has "
                            f"{', '.join(table.schema_arrow.names)} (--field names the column "
                            "that holds the text)")
        row = 0
        for batch in table.iter_batches(columns=[key], batch_size=rows_per_batch(table)):
            for value in batch.column(0).to_pylist():
                row += 1
                if (doc := _document(f"{f}:{row}", value, f"column {key!r}", nulls)) is not None:
                    yield doc


def read_text_summary(rec: dict[str, Any]) -> str:
    """'N file(s) read, skipped ...' of a source's record."""
    skipped = ", ".join(f"{n} {s}" for s, n in sorted(rec.get("skipped", {}).items()))
    return f"{rec['read']} file(s) read" + (f", skipped {skipped}" if skipped else "")
