"""Fuzz the napari reader with mutated PNG files from the conformance suite.

Each case is a suite file after one seeded mutation. The mutations are
truncation, flipped bytes (with and without recomputed CRCs), a changed
chunk length, a changed IHDR field, a dropped, repeated or swapped chunk,
and an added tEXt chunk that routes the file to the label decoder. Every
case must return a valid layer or raise ``PngError``.

The cases run in a worker subprocess (this file run as a script), so a
crash of the interpreter or a hang fails the case instead of the test run.
The worker caps its address space, and reports how far each case raised
its peak RSS, which must stay near the decoded size the header declares.
"""

from __future__ import annotations

import json
import os
import random
import select
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEED = 20240607
MUTATIONS_PER_FILE = 3

# Seconds one decode may take in the worker before the case counts as a hang.
CASE_TIMEOUT = 20.0
# Seconds the worker may take to import numpy and imagecodecs.
STARTUP_TIMEOUT = 60.0

# The worker lowers the reader's pixel limit so a mutated header cannot
# make it decode gigabytes legitimately, and caps its address space above
# its size after imports, so a runaway allocation raises MemoryError.
WORKER_MAX_PIXELS = 2**22
ADDRESS_SPACE_MARGIN = 1536 * 2**20
# Peak RSS growth allowed per case: a few copies of the declared decoded
# size (decoder output, RGBA conversion, the stacked layer) plus slack for
# the file bytes and allocator noise.
RSS_COPIES = 4
RSS_SLACK = 64 * 2**20

BYTES_PER_SAMPLE = {8: 1, 16: 2}
CHANNELS = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}
LABEL_TEXT = b"napari-color-kmeans\x00" + json.dumps({"kind": "labels"}).encode()


@dataclass(frozen=True)
class Chunk:
    type: bytes
    data: bytes


def split_chunks(content: bytes) -> list[Chunk]:
    """Split a valid PNG into its chunks (type and data; lengths and CRCs dropped)."""
    chunks = []
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(content):
        length, chunk_type = struct.unpack_from(">I4s", content, offset)
        chunks.append(Chunk(chunk_type, content[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    return chunks


def encode_chunk(chunk: Chunk) -> bytes:
    body = chunk.type + chunk.data
    return struct.pack(">I", len(chunk.data)) + body + struct.pack(">I", zlib.crc32(body))


def join_chunks(chunks: list[Chunk]) -> bytes:
    return PNG_SIGNATURE + b"".join(encode_chunk(chunk) for chunk in chunks)


# -- mutations: each takes the file bytes, its chunks and an RNG ----------


def truncate(content, chunks, rng):
    return content[: rng.randrange(len(content))]


def flip_bytes(content, chunks, rng):
    mutated = bytearray(content)
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(PNG_SIGNATURE), len(mutated))
        mutated[position] ^= 1 << rng.randrange(8)
    return bytes(mutated)


def flip_data_fix_crc(content, chunks, rng):
    """Flip bytes inside one chunk's data and store a matching CRC, to reach the decoder."""
    candidates = [index for index, chunk in enumerate(chunks) if chunk.data]
    index = rng.choice(candidates)
    data = bytearray(chunks[index].data)
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    chunks = list(chunks)
    chunks[index] = Chunk(chunks[index].type, bytes(data))
    return join_chunks(chunks)


def change_length(content, chunks, rng):
    """Overwrite one chunk's length field (not covered by the CRC)."""
    offsets = []
    offset = len(PNG_SIGNATURE)
    for chunk in chunks:
        offsets.append(offset)
        offset += 12 + len(chunk.data)
    position = rng.choice(offsets)
    (length,) = struct.unpack_from(">I", content, position)
    new_length = rng.choice([0, 1, length - 1, length + 1, length * 2, 2**31 - 1, 2**32 - 1])
    mutated = bytearray(content)
    struct.pack_into(">I", mutated, position, max(0, min(new_length, 2**32 - 1)))
    return bytes(mutated)


def change_header(content, chunks, rng):
    """Change one IHDR field to an odd value and store a matching CRC."""
    width, height, depth, color, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0].data
    )
    fields = [width, height, depth, color, compression, filtering, interlace]
    field = rng.randrange(len(fields))
    if field < 2:
        fields[field] = rng.choice([0, 1, fields[field] + 1, fields[field] * 3, 5000, 2**31 - 1])
    else:
        fields[field] = rng.choice([0, 1, 2, 3, 4, 6, 8, 16, 255])
    chunks = list(chunks)
    chunks[0] = Chunk(b"IHDR", struct.pack(">IIBBBBB", *fields))
    return join_chunks(chunks)


def rearrange_chunks(content, chunks, rng):
    """Drop, repeat or swap chunks after IHDR, with valid CRCs."""
    chunks = list(chunks)
    body = chunks[1:]
    action = rng.choice(["drop", "repeat", "swap"])
    index = rng.randrange(len(body))
    if action == "drop":
        del body[index]
    elif action == "repeat":
        body.insert(index, body[index])
    else:
        other = rng.randrange(len(body))
        body[index], body[other] = body[other], body[index]
    return join_chunks([chunks[0], *body])


def mark_as_labels(content, chunks, rng):
    """Add the writer's labels tEXt chunk, then flip IDAT bytes, to fuzz the label decoder."""
    marked = [chunks[0], Chunk(b"tEXt", LABEL_TEXT), *chunks[1:]]
    idat = [index for index, chunk in enumerate(marked) if chunk.type == b"IDAT"]
    if idat and rng.random() < 0.7:
        index = rng.choice(idat)
        data = bytearray(marked[index].data)
        data[rng.randrange(len(data))] = rng.randrange(256)
        marked[index] = Chunk(b"IDAT", bytes(data))
    return join_chunks(marked)


MUTATIONS = (
    truncate,
    flip_bytes,
    flip_data_fix_crc,
    change_length,
    change_header,
    rearrange_chunks,
    mark_as_labels,
)


def inflation_bomb(color_type: int, marked_as_labels: bool) -> bytes:
    """Build a 16 x 16 PNG whose IDAT inflates to 512 MiB, far beyond its declared size."""
    chunks = [Chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, color_type, 0, 0, 0))]
    if color_type == 3:
        chunks.append(Chunk(b"PLTE", bytes(range(12))))
    if marked_as_labels:
        chunks.append(Chunk(b"tEXt", LABEL_TEXT))
    compressor = zlib.compressobj(9)
    block = bytes(2**20)
    compressed = b"".join(compressor.compress(block) for _ in range(512)) + compressor.flush()
    chunks += [Chunk(b"IDAT", compressed), Chunk(b"IEND", b"")]
    return join_chunks(chunks)


def write_cases(suite: Path, folder: Path) -> list[Path]:
    """Write the seeded mutations of every suite file (and the inflation bombs) to ``folder``."""
    rng = random.Random(SEED)
    paths = []
    for source in sorted(suite.glob("*.png")):
        content = source.read_bytes()
        chunks = split_chunks(content)
        for number in range(MUTATIONS_PER_FILE):
            mutation = rng.choice(MUTATIONS)
            path = folder / f"{source.stem}-{number}-{mutation.__name__}.png"
            path.write_bytes(mutation(content, chunks, rng))
            paths.append(path)

    for color_type, marked in ((3, True), (3, False), (2, False), (0, True)):
        path = folder / f"bomb-type{color_type}-{'labels' if marked else 'image'}.png"
        path.write_bytes(inflation_bomb(color_type, marked))
        paths.append(path)
    return paths


# -- the worker subprocess ---------------------------------------------------


def declared_bytes(path: Path) -> int:
    """Return the decoded size that the file's IHDR declares, or 0 if it has none."""
    head = path.read_bytes()[:33]
    if len(head) < 33 or head[12:16] != b"IHDR":
        return 0
    width, height, depth, color = struct.unpack_from(">IIBB", head, 16)
    if width * height > WORKER_MAX_PIXELS:
        return 0
    return width * height * CHANNELS.get(color, 4) * BYTES_PER_SAMPLE.get(depth, 1)


def describe_layer(layer_data) -> dict:
    data, kwargs, layer_type = layer_data
    return {
        "status": "ok",
        "class": type(data).__name__,
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "layer_type": layer_type,
        "rgb": kwargs.get("rgb"),
    }


def read_one(path: Path) -> dict:
    """Read ``path`` with the napari reader and describe the outcome as a dict."""
    from napari_color_kmeans._png import PngError
    from napari_color_kmeans._reader import napari_get_reader

    try:
        reader = napari_get_reader(str(path))
        (layer_data,) = reader(str(path))
    except PngError as error:
        return {"status": "rejected", "message": str(error)}
    except Exception as error:  # noqa: BLE001 - the worker reports every other error
        return {"status": "unexpected", "error": f"{type(error).__name__}: {error}"}
    return describe_layer(layer_data)


def limit_address_space() -> None:
    import resource

    import psutil

    limit = psutil.Process().memory_info().vms + ADDRESS_SPACE_MARGIN
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker_main() -> None:
    """Read each path given on stdin; write one JSON line per path to stdout."""
    import resource

    import numpy  # noqa: F401 - imported before the address-space cap
    import napari_color_kmeans._reader  # noqa: F401

    limit_address_space()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        path = Path(line.strip())
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        outcome = read_one(path)
        outcome["rss_growth"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
        outcome["path"] = str(path)
        print(json.dumps(outcome), flush=True)


class Worker:
    """A worker subprocess that reads one file per request, with a time limit per file."""

    def __init__(self) -> None:
        environment = {
            **os.environ,
            "NAPARI_COLOR_KMEANS_MAX_PIXELS": str(WORKER_MAX_PIXELS),
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, __file__, "worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=environment,
            text=True,
        )
        ready = self.next_line(STARTUP_TIMEOUT)
        if ready is None:
            raise RuntimeError(
                f"the fuzz worker did not report ready within {STARTUP_TIMEOUT} s; "
                "run 'python tests/test_reader_fuzz.py worker' to see its error"
            )

    def next_line(self, timeout: float) -> dict | None:
        """Return the worker's next JSON line, or None if it died or timed out."""
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        return json.loads(line) if line else None

    def read(self, path: Path) -> dict:
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        outcome = self.next_line(CASE_TIMEOUT)
        if outcome is not None:
            return outcome
        if self.process.poll() is None:
            self.stop()
            return {"status": "timed out", "path": str(path)}
        return {"status": "crashed", "returncode": self.process.returncode, "path": str(path)}

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def read_all(paths: list[Path]) -> list[dict]:
    """Read every path in worker subprocesses, starting a new one after a hang or crash."""
    outcomes = []
    worker = Worker()
    try:
        for path in paths:
            outcome = worker.read(path)
            outcomes.append(outcome)
            if outcome["status"] in ("timed out", "crashed"):
                worker.stop()
                worker = Worker()
    finally:
        worker.stop()
    return outcomes


# -- checks ------------------------------------------------------------------


def layer_problem(outcome: dict) -> str | None:
    """Return what is wrong with a returned layer, or None if it is valid."""
    shape = outcome["shape"]
    if outcome["class"] != "ndarray":
        return f"data is a {outcome['class']}, not a numpy array"
    if outcome["dtype"] not in ("uint8", "uint16"):
        return f"dtype {outcome['dtype']} is not uint8 or uint16"
    if min(shape) < 1:
        return f"shape {shape} has an empty axis"
    if outcome["layer_type"] == "labels":
        return None if len(shape) == 2 else f"labels shape {shape} is not 2-D"
    if len(shape) == 2:
        return None if not outcome["rgb"] else f"grey shape {shape} is marked rgb"
    if len(shape) == 3 and shape[2] in (3, 4) and outcome["rgb"]:
        return None
    return f"image shape {shape} with rgb={outcome['rgb']} is not grey, RGB or RGBA"


@pytest.fixture(scope="module")
def fuzz_outcomes(pngsuite_dir, tmp_path_factory) -> list[tuple[Path, dict]]:
    """Write every fuzz case once and return each path with the worker's outcome."""
    paths = write_cases(pngsuite_dir, tmp_path_factory.mktemp("fuzz"))
    return list(zip(paths, read_all(paths)))


def names_with_status(fuzz_outcomes, status: str) -> list[str]:
    return [path.name for path, outcome in fuzz_outcomes if outcome["status"] == status]


def test_reader_never_hangs(fuzz_outcomes):
    assert names_with_status(fuzz_outcomes, "timed out") == []


def test_reader_never_crashes(fuzz_outcomes):
    assert names_with_status(fuzz_outcomes, "crashed") == []


def test_reader_raises_only_png_error(fuzz_outcomes):
    unexpected = [
        (path.name, outcome["error"])
        for path, outcome in fuzz_outcomes
        if outcome["status"] == "unexpected"
    ]
    assert unexpected == []


def test_reader_returns_valid_layers(fuzz_outcomes):
    decoded = [(path, outcome) for path, outcome in fuzz_outcomes if outcome["status"] == "ok"]
    invalid = [(path.name, layer_problem(outcome)) for path, outcome in decoded]
    invalid = [(name, problem) for name, problem in invalid if problem is not None]

    assert invalid == []
    assert len(decoded) >= len(fuzz_outcomes) // 10, "too few mutations still decode"


def test_rejections_name_the_file(fuzz_outcomes):
    rejected = [outcome for _, outcome in fuzz_outcomes if outcome["status"] == "rejected"]

    assert len(rejected) >= len(fuzz_outcomes) // 4, "too few mutations are rejected"
    for outcome in rejected:
        message = outcome["message"]
        assert repr(outcome["path"]) in message
        assert "Check that the file is complete" in message or "raise the limit" in message


def test_memory_stays_near_declared_size(fuzz_outcomes):
    over = []
    for path, outcome in fuzz_outcomes:
        allowed = RSS_COPIES * declared_bytes(path) + RSS_SLACK
        if outcome.get("rss_growth", 0) > allowed:
            over.append((path.name, outcome["rss_growth"], allowed))

    assert over == [], "peak RSS grew beyond the declared decoded size"


def test_inflation_bombs_are_bounded(fuzz_outcomes):
    bombs = [(path, outcome) for path, outcome in fuzz_outcomes if path.name.startswith("bomb")]

    assert len(bombs) == 4
    for path, outcome in bombs:
        assert outcome["status"] in ("ok", "rejected"), path.name
        assert outcome["rss_growth"] <= RSS_SLACK, path.name


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    worker_main()
