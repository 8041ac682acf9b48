"""Read a zip archive's central directory and check the dogImages layout, without touching file contents.

Pure logic, no AWS: :func:`read_central_directory` works on any seekable binary file (an in-memory archive in
tests, :class:`~pipeline.common.s3_ranged_reader.S3RangedReader` in the Lambda) and reads only the archive's tail
and its central directory, so a 1 GB dataset is checked from about 1 MB. :func:`inspect_dataset` then checks the
entry names and sizes against the expected layout::

    [<one optional root folder>/]{train,valid,test}/<class folder>/<image>.{jpg,jpeg,png}

Every rejection raises :class:`DatasetInvalid` whose message lists each problem found, with what to do about it.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline.common.errors import DatasetInvalid

SPLITS = ("train", "valid", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TAIL_BYTES = 64 * 1024
EXAMPLES_SHOWN = 5

# Record layouts from PKWARE's APPNOTE (the same ones CPython's zipfile uses).
_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_EOCD_SIGNATURE = b"PK\x06\x06"
_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")
_CENTRAL_HEADER_SIGNATURE = b"PK\x01\x02"
_MAX_COMMENT = 0xFFFF
_ZIP64_EXTRA_ID = 0x0001
_UTF8_NAME_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1
_AES_METHOD = 99

_JUNK_FOLDERS = frozenset({"__macosx"})
_JUNK_FILES = frozenset({"thumbs.db", "desktop.ini"})
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ZipEntry:
    name: str
    compressed_size: int
    uncompressed_size: int
    flags: int = 0
    method: int = 0

    @property
    def is_directory(self) -> bool:
        return self.name.endswith("/")

    @property
    def is_encrypted(self) -> bool:
        return bool(self.flags & _ENCRYPTED_FLAG) or self.method == _AES_METHOD


@dataclass(frozen=True)
class CentralDirectory:
    entries: tuple[ZipEntry, ...]
    offset: int
    size: int
    zip64: bool


@dataclass(frozen=True)
class SafetyLimits:
    """Zip-bomb and sanity thresholds; the dogImages zip (1.1 GB, ~1 MB directory, JPEGs at ratio ~1) is far below."""

    max_total_uncompressed_bytes: int = 16 * 1024**3
    max_compression_ratio: float = 100.0
    # Small files (text, tiny PNGs) legitimately compress well; only entries this large are held to the ratio.
    ratio_check_min_bytes: int = 1024**2
    max_central_directory_bytes: int = 64 * 1024**2


@dataclass(frozen=True)
class ExpectedLayout:
    classes: int
    images: Mapping[str, int]


@dataclass(frozen=True)
class DatasetLayout:
    root: str
    classes: tuple[str, ...]
    counts: dict[str, int]
    ignored_count: int
    ignored_examples: tuple[str, ...]
    directory_entries: int
    total_uncompressed_bytes: int


class SeekableReader(Protocol):
    """What the central directory reader needs from an archive: an in-memory file or an S3 ranged reader."""

    def seek(self, offset: int, /) -> int: ...

    def read(self, size: int, /) -> bytes: ...


def _examples(items: Sequence[str], shown: int = EXAMPLES_SHOWN) -> str:
    listed = ", ".join(items[:shown])
    return listed if len(items) <= shown else f"{listed} and {len(items) - shown} more"


class _TailWindow:
    """The archive's bytes from ``start`` to its end, grown towards the front with one read per step."""

    def __init__(self, archive: SeekableReader, archive_size: int) -> None:
        self._archive = archive
        self.size = archive_size
        self.start = archive_size
        self.data = b""

    def extend_to(self, offset: int) -> None:
        offset = max(0, offset)
        if offset >= self.start:
            return
        self._archive.seek(offset)
        wanted = self.start - offset
        chunk = self._archive.read(wanted)
        if len(chunk) != wanted:
            raise DatasetInvalid(
                f"the archive ended early (read {len(chunk)} of {wanted} bytes at offset {offset}); "
                "upload the complete .zip file again"
            )
        self.data = chunk + self.data
        self.start = offset

    def slice(self, offset: int, length: int) -> bytes:
        self.extend_to(offset)
        return self.data[offset - self.start : offset - self.start + length]


def _find_end_record(window: _TailWindow) -> int:
    """Absolute offset of the end-of-central-directory record, searching backwards past any archive comment."""
    while True:
        position = len(window.data)
        while (position := window.data.rfind(_EOCD_SIGNATURE, 0, position)) >= 0:
            absolute = window.start + position
            if absolute + _EOCD.size <= window.size:
                comment_length = _EOCD.unpack_from(window.data, position)[7]
                # A signature inside the comment itself would not account for the bytes after it.
                if absolute + _EOCD.size + comment_length == window.size:
                    return absolute
        # Reach the Zip64 locator and record too, so they cost no read of their own.
        widest_start = max(0, window.size - _EOCD.size - _MAX_COMMENT - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size)
        if window.start <= widest_start:
            break
        window.extend_to(widest_start)
    raise DatasetInvalid(
        "the file is not a zip archive or is truncated (no end-of-central-directory record at its end); "
        "upload the complete .zip file again"
    )


def _decode_name(raw: bytes, flags: int) -> str:
    # Without the UTF-8 flag the APPNOTE says names are CP437, which is what zipfile assumes as well.
    return raw.decode("utf-8", errors="replace") if flags & _UTF8_NAME_FLAG else raw.decode("cp437")


def _zip64_sizes(extra: bytes, sizes: list[int]) -> list[int]:
    """Replace the 0xFFFFFFFF placeholders in ``sizes`` (uncompressed, compressed, offset) from the Zip64 extra."""
    position = 0
    while position + 4 <= len(extra):
        header_id, data_length = struct.unpack_from("<2H", extra, position)
        body = extra[position + 4 : position + 4 + data_length]
        if header_id == _ZIP64_EXTRA_ID:
            values = iter(struct.unpack_from(f"<{len(body) // 8}Q", body))
            return [next(values, value) if value == 0xFFFFFFFF else value for value in sizes]
        position += 4 + data_length
    return sizes


def parse_central_directory(data: bytes, expected_entries: int) -> list[ZipEntry]:
    entries: list[ZipEntry] = []
    position = 0
    while position < len(data):
        if position + _CENTRAL_HEADER.size > len(data) or data[position : position + 4] != _CENTRAL_HEADER_SIGNATURE:
            raise DatasetInvalid(
                f"the zip's central directory is corrupt at entry {len(entries) + 1}; re-create the .zip and upload it"
            )
        header = _CENTRAL_HEADER.unpack_from(data, position)
        flags, method, compressed, uncompressed = header[5], header[6], header[10], header[11]
        name_length, extra_length, comment_length, header_offset = header[12], header[13], header[14], header[18]
        name_start = position + _CENTRAL_HEADER.size
        extra_start = name_start + name_length
        uncompressed, compressed, _ = _zip64_sizes(
            data[extra_start : extra_start + extra_length], [uncompressed, compressed, header_offset]
        )
        entries.append(
            ZipEntry(
                name=_decode_name(data[name_start:extra_start], flags),
                compressed_size=compressed,
                uncompressed_size=uncompressed,
                flags=flags,
                method=method,
            )
        )
        position = extra_start + extra_length + comment_length
    if len(entries) != expected_entries:
        raise DatasetInvalid(
            f"the zip's central directory holds {len(entries)} entries but its end record says {expected_entries}; "
            "the archive is corrupt, re-create it and upload it again"
        )
    return entries


def read_central_directory(
    archive: SeekableReader, archive_size: int, *, tail_bytes: int = TAIL_BYTES, limits: SafetyLimits | None = None
) -> CentralDirectory:
    """Parse the central directory, reading the archive's last ``tail_bytes`` first and then only what is missing.

    For a typical archive that is two reads: the tail (end record, Zip64 locator and record) and the rest of the
    central directory in front of it, or one read when the whole directory fits in the tail.
    """
    limits = limits or SafetyLimits()
    if archive_size == 0:
        raise DatasetInvalid("the file is empty (0 bytes); upload the dataset .zip file again")
    window = _TailWindow(archive, archive_size)
    window.extend_to(archive_size - tail_bytes)
    end_record_at = _find_end_record(window)
    (_, disk, directory_disk, _, entry_count, directory_size, directory_offset, _) = _EOCD.unpack(
        window.slice(end_record_at, _EOCD.size)
    )
    directory_end = end_record_at
    zip64 = False
    locator_at = end_record_at - _ZIP64_LOCATOR.size
    if locator_at >= 0 and window.slice(locator_at, 4) == _ZIP64_LOCATOR_SIGNATURE:
        _, _, recorded_record_at, _ = _ZIP64_LOCATOR.unpack(window.slice(locator_at, _ZIP64_LOCATOR.size))
        # The record normally sits right before the locator; trust its recorded offset only when it does not.
        record_at = locator_at - _ZIP64_EOCD.size
        if record_at < 0 or window.slice(record_at, 4) != _ZIP64_EOCD_SIGNATURE:
            record_at = recorded_record_at
        record = _ZIP64_EOCD.unpack(window.slice(record_at, _ZIP64_EOCD.size))
        if record[0] != _ZIP64_EOCD_SIGNATURE:
            raise DatasetInvalid("the zip's Zip64 end record is missing or corrupt; re-create the .zip and upload it")
        disk, directory_disk, entry_count, directory_size, directory_offset = (
            record[4],
            record[5],
            record[7],
            record[8],
            record[9],
        )
        directory_end = record_at
        zip64 = True
    elif 0xFFFFFFFF in (directory_size, directory_offset):
        # The 32-bit fields say "see the Zip64 record", but the locator pointing at it is not there.
        raise DatasetInvalid(
            "the zip declares Zip64 sizes but has no Zip64 locator; it is truncated or corrupt, upload it again"
        )
    if disk != 0 or directory_disk != 0:
        raise DatasetInvalid("split (multi-part) zip archives are not supported; upload one single .zip file")
    if entry_count == 0:
        raise DatasetInvalid("the zip archive is empty (it has no entries); zip the dogImages folder and upload it")
    if directory_size > limits.max_central_directory_bytes:
        raise DatasetInvalid(
            f"the zip's central directory is {directory_size:,} bytes, over the limit of "
            f"{limits.max_central_directory_bytes:,}; that many entries is not an image dataset"
        )
    directory_start = directory_end - directory_size
    if directory_start < 0 or directory_offset > directory_start:
        raise DatasetInvalid(
            "the zip is truncated: its central directory points before the start of the file; "
            "upload the complete .zip file again"
        )
    entries = parse_central_directory(window.slice(directory_start, directory_size), entry_count)
    return CentralDirectory(entries=tuple(entries), offset=directory_start, size=directory_size, zip64=zip64)


def _is_junk(parts: Sequence[str]) -> bool:
    return any(part.lower() in _JUNK_FOLDERS or part.startswith(".") for part in parts) or (
        parts[-1].lower() in _JUNK_FILES
    )


def _safety_problems(entries: Sequence[ZipEntry], limits: SafetyLimits) -> list[str]:
    problems: list[str] = []
    encrypted = [entry.name for entry in entries if entry.is_encrypted]
    if encrypted:
        problems.append(
            f"encrypted entries ({len(encrypted)}): {_examples(encrypted)}; zip the dataset without a password"
        )
    unsafe = [
        entry.name
        for entry in entries
        if entry.name.startswith("/") or _DRIVE_LETTER.match(entry.name) or ".." in entry.name.split("/")
    ]
    if unsafe:
        problems.append(
            f"entries with absolute paths or '..' in their names ({len(unsafe)}): {_examples(unsafe)}; "
            "zip the dataset folder with relative paths only"
        )
    backslashed = [entry.name for entry in entries if "\\" in entry.name]
    if backslashed:
        problems.append(
            f"entries using '\\' as a folder separator ({len(backslashed)}): {_examples(backslashed)}; "
            "re-create the zip with a tool that writes '/' (for example 'zip -r' or Python's zipfile)"
        )
    duplicates = sorted(name for name, seen in Counter(entry.name for entry in entries).items() if seen > 1)
    if duplicates:
        problems.append(
            f"names that appear more than once in the archive ({len(duplicates)}): {_examples(duplicates)}; "
            "re-create the zip from a clean folder instead of appending to it"
        )
    total = sum(entry.uncompressed_size for entry in entries)
    if total > limits.max_total_uncompressed_bytes:
        problems.append(
            f"the files would expand to {total:,} bytes, over the limit of {limits.max_total_uncompressed_bytes:,} "
            "(possible zip bomb); check the archive, or raise the limit if the dataset really is that large"
        )
    inflated = [
        f"{entry.name} ({entry.uncompressed_size / max(entry.compressed_size, 1):.0f}:1)"
        for entry in entries
        if entry.uncompressed_size >= limits.ratio_check_min_bytes
        and entry.uncompressed_size > limits.max_compression_ratio * max(entry.compressed_size, 1)
    ]
    if inflated:
        problems.append(
            f"entries compressed more than {limits.max_compression_ratio:.0f}:1, which images never are "
            f"(possible zip bomb) ({len(inflated)}): {_examples(inflated)}"
        )
    return problems


def _find_root(paths: Iterable[Sequence[str]]) -> str:
    tops = sorted({parts[0] for parts in paths if len(parts) > 1})
    if not tops or any(top in SPLITS for top in tops):
        return ""
    if len(tops) == 1:
        return tops[0]
    raise DatasetInvalid(
        "expected the folders train/, valid/ and test/ at the top of the zip or inside one folder (such as "
        f"dogImages/), but found several top-level folders: {_examples([f'{top}/' for top in tops])}"
    )


def _class_problems(classes: Mapping[str, set[str]], expected_classes: int) -> list[str]:
    problems: list[str] = []
    for split, names in classes.items():
        if len(names) != expected_classes:
            problems.append(f"{split}/ has {len(names)} class folders, expected {expected_classes}")
    reference_split = next(iter(classes), None)
    if reference_split is None:
        return problems
    reference = classes[reference_split]
    for split, names in classes.items():
        missing, extra = sorted(reference - names), sorted(names - reference)
        if missing:
            problems.append(
                f"{split}/ lacks classes that {reference_split}/ has ({len(missing)}): {_examples(missing)}; "
                "every split needs the same class folders"
            )
        if extra:
            problems.append(
                f"{split}/ has classes that {reference_split}/ lacks ({len(extra)}): {_examples(extra)}; "
                "every split needs the same class folders"
            )
    return problems


def inspect_dataset(
    entries: Sequence[ZipEntry], expected: ExpectedLayout, limits: SafetyLimits | None = None
) -> DatasetLayout:
    """Check names and sizes against the dogImages layout; raise DatasetInvalid listing every problem found."""
    limits = limits or SafetyLimits()
    safety = _safety_problems(entries, limits)
    if safety:
        # The layout of an archive that is unsafe to extract is beside the point.
        raise DatasetInvalid("; ".join(safety))

    ignored: list[str] = []
    directories: list[list[str]] = []
    files: list[tuple[list[str], ZipEntry]] = []
    for entry in entries:
        parts = entry.name.rstrip("/").split("/")
        if _is_junk(parts):
            ignored.append(entry.name)
        elif entry.is_directory:
            directories.append(parts)
        else:
            files.append((parts, entry))
    if not files:
        raise DatasetInvalid(
            f"the zip holds no files, only {len(directories)} folders and {len(ignored)} ignored entries; "
            "zip the dogImages folder with its images and upload it"
        )

    root = _find_root([parts for parts, _ in files])
    depth = 1 if root else 0

    def relative(parts: list[str]) -> list[str] | None:
        if root and (len(parts) <= depth or parts[0] != root):
            return None
        return parts[depth:]

    problems: list[str] = []
    class_images: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    seen_splits: set[str] = set()
    unexpected_folders: set[str] = set()
    loose: list[str] = []
    nested: list[str] = []
    non_images: list[str] = []
    empty_images: list[str] = []
    for parts in directories:
        rel = relative(parts)
        if rel and rel[0] in SPLITS:
            seen_splits.add(rel[0])
            if len(rel) == 2:
                class_images[rel[0]].setdefault(rel[1], 0)
    for parts, entry in files:
        rel = relative(parts)
        if rel is None or len(rel) == 1:
            # Files beside the splits (a README, a licence) do not reach training; report and move on.
            ignored.append(entry.name)
            continue
        split = rel[0]
        if split not in SPLITS:
            unexpected_folders.add(split)
            continue
        seen_splits.add(split)
        if len(rel) == 2:
            loose.append(entry.name)
        elif len(rel) > 3:
            nested.append(entry.name)
        elif not rel[2].lower().endswith(IMAGE_EXTENSIONS):
            non_images.append(entry.name)
            class_images[split].setdefault(rel[1], 0)
        else:
            class_images[split][rel[1]] = class_images[split].get(rel[1], 0) + 1
            if entry.uncompressed_size == 0:
                empty_images.append(entry.name)

    prefix = f"{root}/" if root else ""
    missing_splits = [f"{prefix}{split}/" for split in SPLITS if split not in seen_splits]
    if missing_splits:
        problems.append(f"missing split folders: {', '.join(missing_splits)} (expected {prefix}train|valid|test/)")
    if unexpected_folders:
        folders = [f"{prefix}{name}/" for name in sorted(unexpected_folders)]
        problems.append(
            f"unexpected folders beside the splits: {_examples(folders)}; "
            "the splits must be named exactly train, valid and test"
        )
    if loose:
        problems.append(
            f"files directly in a split folder instead of a class folder ({len(loose)}): {_examples(loose)}; "
            "move each image into its class folder"
        )
    if nested:
        problems.append(
            f"files nested deeper than <split>/<class>/<image> ({len(nested)}): {_examples(nested)}; "
            "move them up into their class folder"
        )
    if non_images:
        problems.append(
            f"files in class folders that are not .jpg/.jpeg/.png images ({len(non_images)}): {_examples(non_images)}; "
            "remove or convert them"
        )
    if empty_images:
        problems.append(f"empty (0-byte) images ({len(empty_images)}): {_examples(empty_images)}; export them again")
    empty_classes = [
        f"{prefix}{split}/{name}/" for split in SPLITS for name, count in class_images[split].items() if count == 0
    ]
    if empty_classes:
        problems.append(f"class folders without images ({len(empty_classes)}): {_examples(sorted(empty_classes))}")
    present = {split: set(class_images[split]) for split in SPLITS if split in seen_splits}
    problems.extend(_class_problems(present, expected.classes))
    counts = {split: sum(class_images[split].values()) for split in SPLITS}
    wrong_counts = [
        f"{split}/ expected {expected.images[split]} images, found {counts[split]}"
        for split in SPLITS
        if split in seen_splits and counts[split] != expected.images[split]
    ]
    if wrong_counts:
        problems.append("image counts differ: " + ", ".join(wrong_counts))
    if problems:
        raise DatasetInvalid("; ".join(problems))

    return DatasetLayout(
        root=prefix,
        classes=tuple(sorted(class_images["train"])),
        counts=counts,
        ignored_count=len(ignored),
        # Files say more than the folder entries of a junk folder.
        ignored_examples=tuple(sorted(ignored, key=lambda name: name.endswith("/"))[:EXAMPLES_SHOWN]),
        directory_entries=len(directories),
        total_uncompressed_bytes=sum(entry.uncompressed_size for entry in entries),
    )


__all__ = [
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "CentralDirectory",
    "DatasetLayout",
    "ExpectedLayout",
    "SafetyLimits",
    "SeekableReader",
    "ZipEntry",
    "inspect_dataset",
    "parse_central_directory",
    "read_central_directory",
]
