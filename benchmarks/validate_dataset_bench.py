"""ValidateDataset (ranged reads of the zip's central directory) against the seed's download-then-count approach.

Builds a dogImages-shaped zip (8,351 images in 133 classes, 6,680 / 835 / 836 per split, plus the folder entries
`zip -r` writes) at a realistic total size (1,100 MB by default, ``--small`` for 50 MB) of random, incompressible
bytes stored without compression, uploads it to a moto S3 server running in its own process, then runs each
approach in a fresh child process and prints, for each: requests made, bytes fetched, wall time, the client's
CPU time (which moto's server-side work does not inflate), peak traced Python memory and peak RSS, with ratios
against the seed measured in the same run.

Approaches:
  seed-download   boto3 ``download_file`` to a temporary file (the managed, ranged, 8 MB-part download), then
                  ``zipfile`` counts the images per split
  seed-in-memory  one ``GetObject`` read into memory, then ``zipfile`` over a BytesIO
  validate        ValidateDataset's reads: HeadObject + ranged GETs of the tail and the central directory, then the
                  full layout check
  validate+copy   the whole ValidateDataset domain function: the above plus the server-side copy to validated/
                  and classes.json (the copy moves no bytes through the function)

Caveat: moto serves a ranged GET by reading the whole object and slicing it, so with moto every GET costs a full
pass over the object on the server side; real S3 does not. Wall times of the ranged approaches are therefore
pessimistic here, and the request and byte counts are the figures that carry over to AWS.

    .venv/bin/python benchmarks/validate_dataset_bench.py            # ~1.1 GB, about 8 minutes on 2 cores
                                                                     # (mostly moto serving the seed's 139 GETs)
    .venv/bin/python benchmarks/validate_dataset_bench.py --small    # 50 MB, seconds
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from pipeline.common.config import load_settings
from pipeline.common.s3_ranged_reader import S3RangedReader
from pipeline.common.zip_inspection import ExpectedLayout, inspect_dataset, read_central_directory
from pipeline.validate_dataset import validate_dataset

BUCKET = "dog-breed-bench"
KEY = "incoming/dogImages.zip"
SPLIT_COUNTS = {"train": 6680, "valid": 835, "test": 836}
CLASS_COUNT = 133
APPROACHES = ("seed-download", "seed-in-memory", "validate", "validate+copy")


def build_archive(path: Path, total_bytes: int, seed: int = 7) -> int:
    """Write the dataset zip; returns the number of entries."""
    rng = random.Random(seed)
    pool = os.urandom(8 * 1024**2)
    images = sum(SPLIT_COUNTS.values())
    mean = total_bytes // images
    classes = [f"{index:03d}.Breed_number_{index:03d}" for index in range(1, CLASS_COUNT + 1)]
    entries = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        folders = ["dogImages/"] + [f"dogImages/{split}/" for split in SPLIT_COUNTS]
        folders += [f"dogImages/{split}/{name}/" for split in SPLIT_COUNTS for name in classes]
        for folder in folders:
            archive.writestr(zipfile.ZipInfo(folder), b"")
            entries += 1
        for split, count in SPLIT_COUNTS.items():
            for index in range(count):
                name = classes[index % CLASS_COUNT]
                size = rng.randint(mean // 2, mean * 3 // 2)
                start = rng.randrange(0, len(pool) - size)
                member = f"dogImages/{split}/{name}/{name.split('.', 1)[1]}_{index:05d}.jpg"
                archive.writestr(zipfile.ZipInfo(member), pool[start : start + size])
                entries += 1
    return entries


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_moto(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("moto server did not start")


def s3_client() -> Any:
    return boto3.client("s3", region_name="us-east-1")


class RequestCounter:
    """Counts every S3 request a client sends, and the body bytes GetObject returns."""

    def __init__(self, client: Any) -> None:
        self.operations: Counter[str] = Counter()
        self.bytes_fetched = 0
        client.meta.events.register("before-call.s3", self._before_call)
        client.meta.events.register("after-call.s3.GetObject", self._after_get)

    def _before_call(self, model: Any, **_: Any) -> None:
        self.operations[model.name] += 1

    def _after_get(self, parsed: dict[str, Any], **_: Any) -> None:
        self.bytes_fetched += int(parsed.get("ContentLength", 0))


def count_with_zipfile(archive: Any) -> dict[str, int]:
    counts: Counter[str] = Counter()
    with zipfile.ZipFile(archive) as opened:
        for name in opened.namelist():
            parts = name.split("/")
            if len(parts) == 4 and parts[3]:
                counts[parts[1]] += 1
    return dict(counts)


def run_approach(approach: str, trace_memory: bool) -> dict[str, Any]:
    """Runs in a child process so that its peak RSS belongs to this approach alone.

    tracemalloc slows every allocation several times over, so times come from a run without it and the traced
    peak from a second run with it.
    """
    client = s3_client()
    # A warm function: endpoint rules resolved and the connection open before anything is measured.
    client.head_bucket(Bucket=BUCKET)
    counter = RequestCounter(client)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace_memory:
        tracemalloc.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    if approach == "seed-download":
        with tempfile.TemporaryDirectory() as scratch:
            target = Path(scratch) / "dogImages.zip"
            client.download_file(BUCKET, KEY, str(target))
            counts = count_with_zipfile(target)
    elif approach == "seed-in-memory":
        body = client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
        counts = count_with_zipfile(io.BytesIO(body))
        del body
    elif approach == "validate":
        reader = S3RangedReader.open(client, BUCKET, KEY)
        directory = read_central_directory(reader, reader.target.size)
        counts = inspect_dataset(directory.entries, ExpectedLayout(CLASS_COUNT, SPLIT_COUNTS)).counts
    elif approach == "validate+copy":
        manual = {"dataset": {"bucket": BUCKET, "key": KEY}}
        counts = validate_dataset(manual, datetime.now(UTC), client, load_settings())["counts"]
    else:
        raise ValueError(f"unknown approach {approach!r}; choose from {', '.join(APPROACHES)}")
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "approach": approach,
        "counts": counts,
        "requests": sum(counter.operations.values()),
        "operations": dict(counter.operations),
        "bytes_fetched": counter.bytes_fetched,
        "wall_s": wall,
        "cpu_s": cpu,
        "traced_peak_mb": traced_peak / 1024**2,
        "rss_before_mb": rss_before / 1024,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="50 MB archive instead of 1,100 MB")
    parser.add_argument("--total-mb", type=int, default=None, help="total image bytes in MB (overrides --small)")
    parser.add_argument("--approaches", default=",".join(APPROACHES), help="comma-separated subset to run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--trace-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_approach(args.child, args.trace_memory)))
        return

    total_mb = args.total_mb or (50 if args.small else 1100)
    port = free_port()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "DATA_BUCKET": BUCKET,
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    os.environ.update(env)
    server = start_moto(port)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "dogImages.zip"
            started = time.perf_counter()
            entries = build_archive(path, total_mb * 1024**2)
            size = path.stat().st_size
            print(f"archive: {entries:,} entries, {size:,} bytes, built in {time.perf_counter() - started:.1f} s")
            client = s3_client()
            client.create_bucket(Bucket=BUCKET)
            started = time.perf_counter()
            client.upload_file(str(path), BUCKET, KEY)
            print(f"uploaded to moto S3 (separate process) in {time.perf_counter() - started:.1f} s")

        results = []
        for approach in args.approaches.split(","):
            timed, traced = (
                json.loads(
                    subprocess.run(
                        [sys.executable, __file__, "--child", approach, *flags],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout.splitlines()[-1]
                )
                for flags in ([], ["--trace-memory"])
            )
            results.append({**timed, "traced_peak_mb": traced["traced_peak_mb"]})
    finally:
        server.terminate()
        server.wait(timeout=30)

    expected = dict(SPLIT_COUNTS)
    baseline = next((r for r in results if r["approach"] == "seed-download"), results[0])
    columns = [  # title, title format, value format, value
        ("approach", "<15", "<15", lambda r: r["approach"]),
        ("requests", ">8", ">8", lambda r: r["requests"]),
        ("bytes fetched", ">15", ">15,", lambda r: r["bytes_fetched"]),
        ("wall s", ">7", ">7.2f", lambda r: r["wall_s"]),
        ("cpu s", ">6", ">6.2f", lambda r: r["cpu_s"]),
        ("traced MB", ">9", ">9.1f", lambda r: r["traced_peak_mb"]),
        ("RSS MB", ">7", ">7.0f", lambda r: r["rss_peak_mb"]),
        ("(at start)", ">10", ">10.0f", lambda r: r["rss_before_mb"]),
        ("bytes ratio", ">11", ">11.5f", lambda r: r["bytes_fetched"] / max(baseline["bytes_fetched"], 1)),
        ("wall ratio", ">10", ">10.3f", lambda r: r["wall_s"] / baseline["wall_s"]),
        ("cpu ratio", ">9", ">9.3f", lambda r: r["cpu_s"] / baseline["cpu_s"]),
        ("RSS ratio", ">9", ">9.2f", lambda r: r["rss_peak_mb"] / baseline["rss_peak_mb"]),
        ("counts ok", ">9", ">9", lambda r: str(r["counts"] == expected)),
    ]
    header = " ".join(f"{title:{title_format}}" for title, title_format, _, _ in columns)
    print(header)
    print("-" * len(header))
    for result in results:
        print(" ".join(f"{value(result):{value_format}}" for _, _, value_format, value in columns))
    for result in results:
        print(f"  {result['approach']}: {result['operations']}")
    validate = next((r for r in results if r["approach"] == "validate"), None)
    if validate:
        within = validate["bytes_fetched"] <= 2 * 1024**2 and validate["requests"] <= 4
        print(
            f"target (counts from <= 2 MB and <= 4 requests, HeadObject included): "
            f"{validate['bytes_fetched']:,} bytes in {validate['requests']} requests -> {'met' if within else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
