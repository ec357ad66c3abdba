"""Every Python code block in README.md and docs/*.md runs as written.

The blocks of one file run in order, in one fresh interpreter, as a reader
would paste them into a session, inside a folder that holds the files the
docs name (photo.png, ladybug.png, a.png, b.png, frames/, photo.zarr,
movie.zarr, slide.zarr). A block right after the line
``<!-- docs-test: skip -->`` is not run, and the text next to such a block must give the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import REPOSITORY_ROOT

BLOCK = re.compile(r"(<!-- docs-test: skip -->\s*)?^( *)```python\n(.*?)^\2```", re.MULTILINE | re.DOTALL)
DOC_FILES = [REPOSITORY_ROOT / "README.md", *sorted((REPOSITORY_ROOT / "docs").glob("*.md"))]
TIMEOUT_SECONDS = 600

# Runs before the blocks: napari's settings go to a temporary file, and
# open viewers close once every thread worker has finished, so a block
# that ends in napari.run() returns like a user closing the window.
PRELUDE = """
import napari
from napari.qt import get_qapp
from qtpy.QtCore import QThread, QTimer
from superqt.utils._qthreading import WorkerBase

def _close_viewers_when_idle():
    # Only inside napari.run()'s event loop: widget.wait() also processes
    # events, and the blocks after it still need their viewer.
    if QThread.currentThread().loopLevel() == 0 or WorkerBase._worker_set:
        return
    for viewer in list(napari.Viewer._instances):
        viewer.close()
    get_qapp().quit()

get_qapp()
_closer = QTimer()
_closer.timeout.connect(_close_viewers_when_idle)
_closer.start(500)
"""


def python_blocks(path: Path) -> list[str]:
    blocks = []
    for match in BLOCK.finditer(path.read_text(encoding="utf-8")):
        if match.group(1):
            continue
        blocks.append(textwrap.dedent(match.group(3)))
    return blocks


@pytest.fixture(scope="module")
def docs_folder(tmp_path_factory, ladybug_path) -> Path:
    """Build a folder with every file that the docs' examples open."""
    import dask.array as da

    from napari_color_kmeans import read_png
    from napari_color_kmeans._png_encode import write_png

    folder = tmp_path_factory.mktemp("docs")
    for name in ("photo.png", "ladybug.png"):
        shutil.copy(ladybug_path, folder / name)
    photo = read_png(ladybug_path)
    small = photo[:120, :160]
    write_png(folder / "a.png", small)
    write_png(folder / "b.png", small[::-1])
    (folder / "frames").mkdir()
    for index in range(3):
        write_png(folder / "frames" / f"frame{index}.png", np.roll(small, 10 * index, axis=1))

    da.from_array(photo, chunks=(256, 256, 3)).to_zarr(str(folder / "photo.zarr"))
    movie = np.stack([small, small[::-1], small[:, ::-1]])
    da.from_array(movie, chunks=(1, 60, 80, 3)).to_zarr(str(folder / "movie.zarr"))
    for level in range(4):
        step = 2**level
        da.from_array(photo[::step, ::step], chunks=(128, 128, 3)).to_zarr(
            str(folder / "slide.zarr"), component=str(level)
        )
    return folder


def test_docs_have_code_blocks():
    with_blocks = {path.name for path in DOC_FILES if python_blocks(path)}
    assert {"README.md", "scripting.md", "dask.md", "png.md"} <= with_blocks


@pytest.mark.parametrize(
    "doc", [path for path in DOC_FILES if python_blocks(path)], ids=lambda path: path.name
)
def test_doc_code_blocks_run(doc: Path, docs_folder: Path, tmp_path: Path):
    blocks = python_blocks(doc)
    script = tmp_path / f"{doc.stem}_blocks.py"
    script.write_text(PRELUDE + "\n".join(blocks), encoding="utf-8")
    environment = {**os.environ, "NAPARI_CONFIG": str(tmp_path / "napari_settings.yaml")}

    completed = subprocess.run(
        [sys.executable, str(script)], cwd=docs_folder, env=environment,
        capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
    )

    assert completed.returncode == 0, (
        f"a code block of {doc.name} failed:\n{completed.stderr[-4000:]}"
    )
