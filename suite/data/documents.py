"""Documents for `tokenize`, read one at a time and in bounded pieces: text files (one document
each, read PIECE_BYTES at a time), .jsonl (one per line, the `key` field) and .parquet (one per
row, about PARQUET_BATCH_BYTES of rows at a time). A long document is cut into pieces just
before a space between two words (`pieces`), so that a byte-level tokenizer gives the very ids
it gives the whole document while memory does not grow with its size (levanter#568). A .jsonl
line must be a JSON object that has the `key`, a .parquet file the column: a line that is not
valid JSON, not an object, or lacks the key is refused naming file:line and what it holds. A
.jsonl value or .parquet cell must be a string: anything else is refused naming the file, row
and key; nulls are skipped and counted."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.data import files as datafiles
from suite.data.sources import TEXT_SUFFIXES, DataError, read_note, text_files

DOC_SUFFIXES = (".jsonl", ".parquet")  # read as many documents, by the `field` key/column
ALLOWED = ("a UTF-8 text file (.txt, .md, .rst, .text, or no suffix, in a folder), a .jsonl or "
           ".parquet file, a folder of them, or a glob such as 'src/**/*.py'")


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
    dot-file or a file that is not text (counted in the record). Raises DataError saying which
    of these `source` is and why it gives no document: no such path, a folder or glob that
    holds none (with what it skipped), or a named file that is not text."""
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix.lower() not in DOC_SUFFIXES and (why := datafiles.not_text(path)):
            raise DataError(f"{path}: not text ({why} of the first {datafiles.TEXT_PROBE}); "
                            f"allowed: {ALLOWED}")
        return [path], {"read": 1, "skipped": {}}
    globbed = datafiles.is_glob(source)
    if not globbed and not path.exists():
        raise DataError(f"{source}: no such file or folder; allowed: {ALLOWED}")
    if not globbed and not path.is_dir():
        raise DataError(f"{source}: not a file or folder; allowed: {ALLOWED}")
    found, rec = text_files(source, TEXT_SUFFIXES + DOC_SUFFIXES, binary=(".parquet",))
    if not found:
        if globbed and not rec["skipped"]:
            raise DataError(f"{source}: no file matches this glob; allowed: {ALLOWED}")
        what = "the files this glob matches hold" if globbed else "a folder, but it holds"
        raise DataError(f"{source}: {what} no document{read_note(source, rec)}; "
                        f"allowed: {ALLOWED}")
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
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{f}:{i}: not valid JSON ({e.msg} at column {e.colno}); each "
                                "line of a .jsonl file is one JSON object") from None
            if not isinstance(row, dict):
                raise DataError(f"{f}:{i}: a JSON {_json_kind(row)}, not an object; each line "
                                f"of a .jsonl file is one JSON object with the text under "
                                f"key {key!r} (--field names the key)")
            if key not in row:
                has = (f"keys {', '.join(repr(k) for k in list(row)[:10])}"
                       + (", ..." if len(row) > 10 else "") if row else "no keys")
                raise DataError(f"{f}:{i}: no key {key!r}; the line has {has} (--field names "
                                "the key that holds the text)")
            if (doc := _document(f"{f}:{i}", row[key], f"key {key!r}", nulls)) is not None:
                yield doc


def _json_kind(value: Any) -> str:
    """JSON's name for a decoded value's type: array, string, boolean, number, null."""
    return ("array" if isinstance(value, list) else "string" if isinstance(value, str) else
            "boolean" if isinstance(value, bool) else "number" if isinstance(value, int | float)
            else "null" if value is None else type(value).__name__)


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
