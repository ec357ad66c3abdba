"""A table of user-facing errors and warnings, each checked for its bad value and its fix.

Every row triggers one message from the engine, the PNG reader, the command
line or the dock widget. It gives a piece of the bad value that the message
must quote and a piece of the advice on what to do next. ``ADVICE`` is a
second, generic check that the message contains an instruction at all.
"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import PLUGIN, WIDGET
from napari.utils.notifications import notification_manager

from napari_color_kmeans import cli
from napari_color_kmeans._engine import ColorKMeansError, ColorKMeansWarning, segment_colors
from napari_color_kmeans._png import PngError, max_pixels_from_environment, read_png
from napari_color_kmeans._reader import read_png_layers, read_stack_layer
from napari_color_kmeans._widget import parse_k_list

ADVICE = re.compile(
    r"\b(pass|use|set|choose|open|convert|enter|replace|check|press|raise|give|select|"
    r"export|stack|unset|include|wait|lower|save|move)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Row:
    """One message: how to trigger it, the bad value it must quote, the advice it must give."""

    name: str
    trigger: Callable[[Path], None]
    bad_value: str
    advice: str


def engine_call(image, n_clusters=8, **options) -> Callable[[Path], None]:
    return lambda _folder: segment_colors(image, n_clusters, **options)


RGB = np.zeros((4, 5, 3), dtype=np.uint8)
NAN_IMAGE = np.full((4, 5, 3), np.nan, dtype=np.float32)
TRANSPARENT = np.zeros((4, 5, 4), dtype=np.uint8)


def png_chunk(chunk_type: bytes, data: bytes) -> bytes:
    body = chunk_type + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def rgb_png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + bytes(3 * width) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def read_bytes_as_png(content: bytes, **options) -> Callable[[Path], None]:
    def trigger(folder: Path) -> None:
        path = folder / "bad.png"
        path.write_bytes(content)
        read_png(path, **options)

    return trigger


def read_mixed_stack(folder: Path) -> None:
    small, large = folder / "small.png", folder / "large.png"
    small.write_bytes(rgb_png(4, 4))
    large.write_bytes(rgb_png(6, 6))
    read_stack_layer([small, large], name="stack")


def read_with_environment(value: str) -> Callable[[Path], None]:
    def trigger(_folder: Path) -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("NAPARI_COLOR_KMEANS_MAX_PIXELS", value)
            max_pixels_from_environment()

    return trigger


def k_list(text: str) -> Callable[[Path], None]:
    return lambda _folder: parse_k_list(text)


VALID_PNG = rgb_png(4, 4)

ROWS = [
    Row("n_clusters zero", engine_call(RGB, 0), "got 0", "pass an int from 1"),
    Row("n_clusters float", engine_call(RGB, 2.5), "got 2.5", "pass an int"),
    Row("random_state negative", engine_call(RGB, random_state=-1), "got -1", "pass an int"),
    Row("method unknown", engine_call(RGB, method="slow"), "'slow'", "use 'auto'"),
    Row("n_init zero", engine_call(RGB, n_init=0), "got 0", "pass None"),
    Row("image grey", engine_call(np.zeros((4, 5))), "(4, 5)", "convert a grey"),
    Row("image two channels", engine_call(np.zeros((10, 12, 2))), "(10, 12, 2)", "convert"),
    Row("image int64", engine_call(np.zeros((4, 5, 3), np.int64)), "int64", "convert it to uint8"),
    Row("image empty", engine_call(np.zeros((0, 5, 3), np.uint8)), "(0, 5, 3)", "pass a non-empty"),
    Row("image channel first", engine_call(np.zeros((3, 40, 50), np.uint8)), "(3, 40, 50)", "move it"),
    Row("all pixels NaN", engine_call(NAN_IMAGE), "all 20 pixels", "pass an image"),
    Row("all pixels transparent", engine_call(TRANSPARENT), "all 20 pixels", "pass an image"),
    Row("color_space unknown", engine_call(RGB, color_space="cmyk"), "'cmyk'", "use 'rgb'"),
    Row("spatial_weight negative", engine_call(RGB, spatial_weight=-1.0), "got -1.0", "pass 0"),
    Row("mask not bool", engine_call(RGB, mask=np.ones((4, 5))), "float64", "pass e.g."),
    Row("mask wrong shape", engine_call(RGB, mask=np.ones((2, 2), bool)), "(2, 2)", "pass a bool"),
    Row("mask empty", engine_call(RGB, mask=np.zeros((4, 5), bool)), "20 pixels", "choose a mask"),
    Row("k list empty", k_list(" , "), "' , '", "Enter whole numbers"),
    Row("k list word", k_list("8, ten"), "'ten'", "Enter whole numbers"),
    Row("k list too large", k_list("8, 300"), "k=300", "Use whole numbers from 1"),
    Row("png not a png", read_bytes_as_png(b"GIF89a" + bytes(40)), "bad.png", "export it again"),
    Row("png truncated", read_bytes_as_png(VALID_PNG[:-20]), "bad.png", "Check that the file"),
    Row("png bad crc", read_bytes_as_png(VALID_PNG[:-1] + b"\x00"), "bad.png", "export it again"),
    Row("png too large", read_bytes_as_png(VALID_PNG, max_pixels=10), "4 x 4 = 16", "raise the limit"),
    Row("png mixed stack", read_mixed_stack, "large.png", "Stack only files"),
    Row("png empty stack", lambda _folder: read_stack_layer([], name="s"), "empty", "give at least"),
    Row("max pixels word", read_with_environment("lots"), "'lots'", "set it to a pixel count"),
    Row("max pixels zero", read_with_environment("0"), "'0'", "unset it"),
]


def trigger_message(row: Row, folder: Path) -> str:
    """Run the row's trigger and return the text of the error it raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColorKMeansWarning)
        with pytest.raises((ColorKMeansError, PngError, ValueError)) as raised:
            row.trigger(folder)
    return str(raised.value)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_error_message(row: Row, tmp_path):
    message = trigger_message(row, tmp_path)

    assert row.bad_value in message
    assert row.advice.lower() in message.lower()
    assert ADVICE.search(message), f"no advice in: {message}"


WARNING_ROWS = [
    (
        "k above distinct colours",
        lambda: segment_colors(np.zeros((4, 5, 3), np.uint8), 3),
        "n_clusters=3",
        "n_clusters=1 was used",
    ),
    (
        "NaN pixels left out",
        lambda: segment_colors(
            np.where(np.eye(4, 5, dtype=bool)[:, :, None], np.nan, np.full((4, 5, 3), 0.5)), 1
        ),
        "4 pixels with NaN",
        "replace those values",
    ),
]


@pytest.mark.parametrize(
    ("trigger", "bad_value", "consequence"),
    [row[1:] for row in WARNING_ROWS],
    ids=[row[0] for row in WARNING_ROWS],
)
def test_warning_message(trigger, bad_value, consequence):
    with pytest.warns(ColorKMeansWarning) as caught:
        trigger()
    messages = [str(record.message) for record in caught]

    assert any(bad_value in message for message in messages), messages
    assert any(consequence in message for message in messages), messages


CLI_ROWS = [
    ("k word", ["-k", "eight"], "'eight'", "give whole numbers"),
    ("k zero", ["-k", "0"], "invalid k 0", "must be from 1"),
    ("seed negative", ["--seed", "-5"], "-5", "use 0 to"),
    ("seed word", ["--seed", "abc"], "'abc'", "give a whole number"),
    ("max pixels zero", ["--max-pixels", "0"], "invalid count 0", "must be 1 or more"),
    ("method unknown", ["--method", "slow"], "'slow'", "choose from"),
]


@pytest.mark.parametrize(
    ("arguments", "bad_value", "advice"),
    [row[1:] for row in CLI_ROWS],
    ids=[row[0] for row in CLI_ROWS],
)
def test_cli_argument_message(arguments, bad_value, advice, tmp_path, capsys):
    source = tmp_path / "in.png"
    source.write_bytes(VALID_PNG)

    with pytest.raises(SystemExit) as exited:
        cli.main(["segment", str(source), "--out", str(tmp_path), *arguments])
    message = capsys.readouterr().err

    assert exited.value.code == 2
    assert bad_value in message
    assert advice in message


def test_cli_out_is_a_file(tmp_path, capsys):
    source = tmp_path / "in.png"
    source.write_bytes(VALID_PNG)
    target = tmp_path / "taken.txt"
    target.write_text("")

    with pytest.raises(SystemExit):
        cli.main(["segment", str(source), "--out", str(target)])
    message = capsys.readouterr().err

    assert "'" + str(target) + "'" in message
    assert "give a folder path" in message


def test_reader_error_names_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(VALID_PNG[:30])

    with pytest.raises(PngError) as raised:
        read_png_layers(str(path))

    assert repr(str(path)) in str(raised.value)
    assert ADVICE.search(str(raised.value))


def notifications_since(start: int, severity: str) -> list[str]:
    return [
        str(record.message)
        for record in notification_manager.records[start:]
        if str(record.severity).lower() == severity
    ]


def test_widget_notifications(make_napari_viewer, qtbot):
    """Trigger each widget notification in one viewer and check it like a table row."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    shown = {}

    start = len(notification_manager.records)
    widget.run()
    shown["no layer"] = (notifications_since(start, "error"), "No RGB image layer", "open an RGB")

    viewer.add_labels(np.zeros((8, 9), np.uint8), name="cells")
    start = len(notification_manager.records)
    widget.run()
    shown["labels layer"] = (notifications_since(start, "error"), "'cells'", "Choose one")

    viewer.add_image(np.zeros((8, 9), np.uint8), name="grey")
    start = len(notification_manager.records)
    widget.run()
    shown["grey layer"] = (notifications_since(start, "error"), "(8, 9)", "Open a colour image")

    start = len(notification_manager.records)
    widget.compare_k.value = "4, four"
    widget.compare()
    shown["compare list"] = (notifications_since(start, "error"), "'four'", "Enter whole numbers")

    rgb = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    layer = viewer.add_image(rgb, name="photo", rgb=True)
    widget.image_layer.value = layer
    widget.method.value = "exact"
    start = len(notification_manager.records)
    widget.run()
    widget.run()
    layer.data = rgb.copy()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=180_000)
    shown["already running"] = (notifications_since(start, "info"), "already running", "wait")
    shown["data changed"] = (notifications_since(start, "warning"), "'photo'", "Press Run again")

    for case, (messages, bad_value, advice) in shown.items():
        assert len(messages) >= 1, f"{case}: no notification"
        message = messages[0]
        assert bad_value in message, f"{case}: {message}"
        assert advice.lower() in message.lower(), f"{case}: {message}"
        assert ADVICE.search(message), f"{case}: {message}"
