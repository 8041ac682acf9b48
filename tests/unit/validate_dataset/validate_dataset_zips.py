"""Small dogImages-layout zips built in memory for the ValidateDataset tests (imported by the test modules)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Mapping

BUCKET = "dog-breed-data-test"
CLASSES = ("001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier")
COUNTS = {"train": 6, "valid": 3, "test": 3}


def dataset_members(
    root: str = "dogImages/",
    classes: Iterable[str] = CLASSES,
    counts: Mapping[str, int] = COUNTS,
    image_bytes: int = 8,
) -> dict[str, bytes]:
    """Images spread round-robin over the classes; contents are arbitrary bytes, never decoded by the validator."""
    class_names = tuple(classes)
    members: dict[str, bytes] = {}
    for split, count in counts.items():
        for index in range(count):
            name = class_names[index % len(class_names)]
            members[f"{root}{split}/{name}/{name}_{index:05d}.jpg"] = bytes([index % 251 + 1]) * image_bytes
    return members


def zip_bytes(
    members: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
    *,
    directory_entries: bool = True,
    compression: int = zipfile.ZIP_STORED,
    comment: bytes = b"",
) -> bytes:
    """A zip as `zip -r` writes it: folder entries first (when asked), then the files."""
    items = list(members.items()) if isinstance(members, Mapping) else list(members)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        if directory_entries:
            explicit = {name for name, _ in items}
            folders = sorted(
                {name[: i + 1] for name, _ in items for i, char in enumerate(name) if char == "/"} - explicit
            )
            for folder in folders:
                archive.writestr(zipfile.ZipInfo(folder), b"")
        for name, data in items:
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
        archive.comment = comment
    return buffer.getvalue()


def dataset_zip(
    root: str = "dogImages/",
    classes: Iterable[str] = CLASSES,
    counts: Mapping[str, int] = COUNTS,
    image_bytes: int = 8,
) -> bytes:
    return zip_bytes(dataset_members(root, classes, counts, image_bytes))
