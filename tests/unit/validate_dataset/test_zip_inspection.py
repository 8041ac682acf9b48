"""The central directory reader and the dogImages layout checks, on zips built in memory (no AWS)."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile

import pytest
from validate_dataset_zips import CLASSES, COUNTS, dataset_members, dataset_zip, zip_bytes

from pipeline.common.errors import DatasetInvalid
from pipeline.common.zip_inspection import (
    TAIL_BYTES,
    DatasetLayout,
    ExpectedLayout,
    SafetyLimits,
    inspect_dataset,
    read_central_directory,
)

EXPECTED = ExpectedLayout(classes=len(CLASSES), images=COUNTS)


class CountingReader(io.BytesIO):
    """An in-memory archive that records every read, standing in for the S3 ranged reader."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.reads.append(len(data))
        return data


def entries_of(data: bytes):
    return read_central_directory(CountingReader(data), len(data)).entries


def inspect(data: bytes, expected: ExpectedLayout = EXPECTED, limits: SafetyLimits | None = None) -> DatasetLayout:
    return inspect_dataset(entries_of(data), expected, limits)


def rejection(data: bytes, expected: ExpectedLayout = EXPECTED, limits: SafetyLimits | None = None) -> str:
    with pytest.raises(DatasetInvalid) as raised:
        inspect(data, expected, limits)
    return str(raised.value)


def set_central_flags(data: bytes, name: str, flags: int) -> bytes:
    """Set general-purpose flag bits on one central directory entry, as an encrypting zip tool would."""
    out = bytearray(data)
    position = out.find(b"PK\x01\x02")
    while position >= 0:
        name_length = struct.unpack_from("<H", out, position + 28)[0]
        if out[position + 46 : position + 46 + name_length].decode() == name:
            current = struct.unpack_from("<H", out, position + 8)[0]
            struct.pack_into("<H", out, position + 8, current | flags)
            return bytes(out)
        position = out.find(b"PK\x01\x02", position + 4)
    raise AssertionError(f"{name} not in the central directory")


# --- a valid dataset -------------------------------------------------------------------------------------------------


def test_valid_dataset_under_a_root_folder_gives_counts_and_classes() -> None:
    layout = inspect(dataset_zip())

    assert layout.root == "dogImages/"
    assert layout.classes == CLASSES
    assert layout.counts == COUNTS
    assert layout.ignored_count == 0


def test_valid_dataset_without_a_root_folder_is_accepted() -> None:
    layout = inspect(dataset_zip(root=""))

    assert layout.root == ""
    assert layout.counts == COUNTS


def test_image_extensions_are_accepted_in_any_case() -> None:
    members = dataset_members()
    renamed = {}
    for index, (name, data) in enumerate(members.items()):
        renamed[name[:-4] + (".JPG", ".jpeg", ".Png", ".JPEG")[index % 4]] = data

    assert inspect(zip_bytes(renamed)).counts == COUNTS


def test_junk_is_ignored_and_reported_but_not_counted() -> None:
    junk = {
        "__MACOSX/dogImages/train/._001.jpg": b"resource fork",
        "dogImages/.DS_Store": b"finder",
        "dogImages/train/001.Affenpinscher/Thumbs.db": b"thumbs",
        "dogImages/README.txt": b"a note beside the splits",
    }
    layout = inspect(zip_bytes({**dataset_members(), **junk}))

    assert layout.counts == COUNTS
    # The files, and the folder entries of __MACOSX/ (__MACOSX/, __MACOSX/dogImages/, __MACOSX/dogImages/train/).
    assert layout.ignored_count == len(junk) + 3
    assert set(layout.ignored_examples) >= set(junk)
    # dogImages/, 3 splits and 3 classes in each: the folder entries `zip -r` writes are not junk.
    assert layout.directory_entries == 1 + 3 + 3 * 3


# --- not a zip, truncated, empty ------------------------------------------------------------------------------------


def test_bytes_that_are_not_a_zip_are_rejected() -> None:
    with pytest.raises(DatasetInvalid, match="not a zip archive or is truncated"):
        entries_of(b"this is a tarball, honest" * 100)


def test_zip_cut_short_at_the_end_is_rejected() -> None:
    data = dataset_zip()

    with pytest.raises(DatasetInvalid, match="not a zip archive or is truncated"):
        entries_of(data[:-10])


def test_zip_missing_its_first_bytes_is_rejected_as_truncated() -> None:
    data = dataset_zip()

    with pytest.raises(DatasetInvalid, match="truncated: its central directory points before"):
        entries_of(data[100:])


def test_zero_byte_file_is_rejected() -> None:
    with pytest.raises(DatasetInvalid, match=r"empty \(0 bytes\)"):
        entries_of(b"")


def test_zip_without_entries_is_rejected() -> None:
    with pytest.raises(DatasetInvalid, match="zip archive is empty"):
        entries_of(zip_bytes({}))


def test_zip_with_only_folders_and_junk_is_rejected() -> None:
    data = zip_bytes({"dogImages/.DS_Store": b"x", "dogImages/train/001.A/": b""})

    assert "holds no files" in rejection(data)


def test_corrupt_central_directory_is_rejected() -> None:
    data = bytearray(dataset_zip())
    first_entry = data.find(b"PK\x01\x02")
    data[first_entry : first_entry + 4] = b"XXXX"

    with pytest.raises(DatasetInvalid, match="central directory is corrupt at entry 1"):
        entries_of(bytes(data))


def test_central_directory_over_the_limit_is_rejected_before_it_is_read() -> None:
    data = dataset_zip()
    archive = CountingReader(data)

    with pytest.raises(DatasetInvalid, match=r"central directory is .* over the limit"):
        read_central_directory(archive, len(data), limits=SafetyLimits(max_central_directory_bytes=100))
    assert archive.reads == [len(data)]  # the tail only


# --- unsafe entries --------------------------------------------------------------------------------------------------


def test_encrypted_entries_are_rejected() -> None:
    name = next(iter(dataset_members()))
    data = set_central_flags(dataset_zip(), name, 0x1)

    message = rejection(data)

    assert "encrypted entries (1)" in message
    assert name in message


@pytest.mark.parametrize("bad_name", ["/etc/dogImages/train/001.A/x.jpg", "dogImages/../../x.jpg", "C:/x.jpg"])
def test_absolute_paths_and_parent_references_are_rejected(bad_name: str) -> None:
    data = zip_bytes({**dataset_members(), bad_name: b"x"}, directory_entries=False)

    message = rejection(data)

    assert "absolute paths or '..'" in message
    assert bad_name in message


def test_backslash_separators_are_rejected() -> None:
    data = zip_bytes({**dataset_members(), "dogImages\\train\\001.A\\x.jpg": b"x"})

    assert "'\\' as a folder separator" in rejection(data)


def test_duplicate_names_are_rejected() -> None:
    name, content = next(iter(dataset_members().items()))
    items = [*dataset_members().items(), (name, content)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate we want
        data = zip_bytes(items)

    message = rejection(data)

    assert "more than once" in message
    assert name in message


def test_highly_compressed_entry_is_rejected_as_a_possible_zip_bomb() -> None:
    members = {**dataset_members(), "dogImages/train/001.Affenpinscher/bomb.jpg": bytes(2 * 1024**2)}
    data = zip_bytes(members, compression=zipfile.ZIP_DEFLATED)

    message = rejection(data)

    assert "compressed more than 100:1" in message
    assert "bomb.jpg" in message


def test_small_files_that_compress_well_are_not_zip_bombs() -> None:
    members = {name: bytes(4096) for name in dataset_members()}

    assert inspect(zip_bytes(members, compression=zipfile.ZIP_DEFLATED)).counts == COUNTS


def test_total_uncompressed_size_over_the_limit_is_rejected() -> None:
    data = dataset_zip(image_bytes=1000)

    message = rejection(data, limits=SafetyLimits(max_total_uncompressed_bytes=5000))

    assert "would expand to 12,000 bytes, over the limit of 5,000" in message


# --- layout ----------------------------------------------------------------------------------------------------------


def test_zero_byte_images_are_rejected() -> None:
    members = dataset_members()
    empty = "dogImages/valid/002.Afghan_hound/002.Afghan_hound_00001.jpg"
    members[empty] = b""

    message = rejection(zip_bytes(members))

    assert "empty (0-byte) images (1)" in message
    assert empty in message


def test_non_image_files_in_class_folders_are_rejected() -> None:
    stray = "dogImages/train/001.Affenpinscher/labels.csv"

    message = rejection(zip_bytes({**dataset_members(), stray: b"a,b"}))

    assert "not .jpg/.jpeg/.png images (1)" in message
    assert stray in message


def test_missing_split_is_named() -> None:
    counts = {"train": 6, "valid": 3}

    message = rejection(dataset_zip(counts=counts))

    assert "missing split folders: dogImages/test/" in message


def test_misnamed_split_is_reported_as_unexpected_folder() -> None:
    members = {name.replace("/valid/", "/validation/"): data for name, data in dataset_members().items()}

    message = rejection(zip_bytes(members))

    assert "unexpected folders beside the splits: dogImages/validation/" in message
    assert "missing split folders: dogImages/valid/" in message


def test_several_top_level_folders_are_rejected() -> None:
    members = {**dataset_members(root="dogImages/"), **dataset_members(root="catImages/")}

    message = rejection(zip_bytes(members))

    assert "several top-level folders: catImages/, dogImages/" in message


def test_files_outside_class_folders_or_nested_too_deep_are_rejected() -> None:
    loose = "dogImages/train/loose.jpg"
    nested = "dogImages/train/001.Affenpinscher/more/deep.jpg"

    message = rejection(zip_bytes({**dataset_members(), loose: b"x", nested: b"y"}))

    assert f"instead of a class folder (1): {loose}" in message
    assert f"nested deeper than <split>/<class>/<image> (1): {nested}" in message


def test_wrong_class_count_names_the_split_and_both_numbers() -> None:
    message = rejection(dataset_zip(), expected=ExpectedLayout(classes=4, images=COUNTS))

    assert "train/ has 3 class folders, expected 4" in message
    assert "valid/ has 3 class folders, expected 4" in message


def test_missing_and_extra_classes_are_named_per_split() -> None:
    members = dataset_members()
    members = {name: data for name, data in members.items() if not name.startswith("dogImages/valid/003.")}
    members["dogImages/valid/001.Affenpinscher/extra.jpg"] = b"x"
    members["dogImages/test/004.Akita/akita.jpg"] = b"x"

    message = rejection(
        zip_bytes(members), expected=ExpectedLayout(classes=3, images={"train": 6, "valid": 3, "test": 4})
    )

    assert "valid/ lacks classes that train/ has (1): 003.Airedale_terrier" in message
    assert "test/ has classes that train/ lacks (1): 004.Akita" in message
    assert "test/ has 4 class folders, expected 3" in message


def test_class_folder_without_images_is_rejected() -> None:
    members = dataset_members()
    data = zip_bytes({**members, "dogImages/test/004.Akita/": b""})

    message = rejection(data)

    assert "class folders without images (1): dogImages/test/004.Akita/" in message


def test_wrong_image_counts_say_expected_and_found_per_split() -> None:
    expected = ExpectedLayout(classes=3, images={"train": 7, "valid": 3, "test": 2})

    message = rejection(dataset_zip(), expected=expected)

    assert "train/ expected 7 images, found 6" in message
    assert "test/ expected 2 images, found 3" in message
    assert "valid/" not in message


def test_every_problem_is_reported_at_once() -> None:
    stray = "dogImages/train/001.Affenpinscher/notes.txt"
    expected = ExpectedLayout(classes=3, images={"train": 5, "valid": 3, "test": 3})

    message = rejection(zip_bytes({**dataset_members(), stray: b"x"}), expected=expected)

    assert "not .jpg/.jpeg/.png images" in message
    assert "train/ expected 5 images, found 6" in message


# --- zip structure: Zip64, comments, prefixes, read counts ---


def test_real_zip64_archive_is_read_like_zipfile_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the limits lowered, CPython's zipfile writes every Zip64 structure it writes for a >4 GiB archive:
    # 0xFFFFFFFF sizes and offsets with the Zip64 extra field, the Zip64 end record and its locator.
    with monkeypatch.context() as patched:
        patched.setattr(zipfile, "ZIP64_LIMIT", 1)
        patched.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)
        data = dataset_zip(image_bytes=300)
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    assert struct.pack("<L", 0xFFFFFFFF) in data

    directory = read_central_directory(CountingReader(data), len(data))

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        reference = [(info.filename, info.compress_size, info.file_size) for info in archive.infolist()]
    assert directory.zip64
    assert [(e.name, e.compressed_size, e.uncompressed_size) for e in directory.entries] == reference
    assert inspect_dataset(directory.entries, EXPECTED).counts == COUNTS


def test_more_than_65535_entries_use_the_zip64_end_record() -> None:
    counts = {"train": 65_600, "valid": 2, "test": 2}
    data = zip_bytes(dataset_members(classes=CLASSES[:2], counts=counts, image_bytes=1), directory_entries=False)

    directory = read_central_directory(CountingReader(data), len(data))
    layout = inspect_dataset(directory.entries, ExpectedLayout(classes=2, images=counts))

    assert directory.zip64
    assert len(directory.entries) == sum(counts.values())
    assert layout.counts == counts


def test_tail_read_covers_a_small_directory_in_one_read() -> None:
    data = dataset_zip()
    archive = CountingReader(data)

    read_central_directory(archive, len(data))

    assert archive.reads == [len(data)]


def test_large_archive_is_read_in_two_reads_of_tail_and_directory_only() -> None:
    data = dataset_zip(counts={"train": 600, "valid": 300, "test": 300}, image_bytes=2000)
    archive = CountingReader(data)

    directory = read_central_directory(archive, len(data))

    assert len(archive.reads) == 2
    assert archive.reads[0] == TAIL_BYTES
    assert sum(archive.reads) == len(data) - directory.offset
    assert sum(archive.reads) < len(data) / 10


def test_longest_archive_comment_needs_one_more_read() -> None:
    data = zip_bytes(dataset_members(image_bytes=20_000), comment=b"c" * 0xFFFF)
    archive = CountingReader(data)

    directory = read_central_directory(archive, len(data))

    assert len(directory.entries) == len(zipfile.ZipFile(io.BytesIO(data)).infolist())
    assert len(archive.reads) == 3


def test_data_prepended_to_the_archive_is_tolerated() -> None:
    # Self-extracting archives carry a program before the zip; the offsets inside stay relative to the zip.
    data = b"MZ" + bytes(5000) + dataset_zip()

    assert inspect(data).counts == COUNTS
