"""Tests of the ``napari-color-kmeans segment`` command line on real PNG files."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import png as pypng
import pytest

from napari_color_kmeans import cli, segment_colors
from napari_color_kmeans._png import read_label_png, read_png, read_png_with_info

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args) -> int:
    return cli.main([str(arg) for arg in args])


def test_segment_writes_three_files(tmp_path, pngsuite_dir, capsys):
    source = pngsuite_dir / "basn2c08.png"

    status = run_cli("segment", source, "-k", "3", "--seed", "7", "--out", tmp_path)

    expected = segment_colors(read_png(source), 3, random_state=7)
    written = capsys.readouterr().out.split()
    assert status == 0
    assert sorted(Path(path).name for path in written) == [
        "basn2c08_k3_clusters.json", "basn2c08_k3_labels.png", "basn2c08_k3_segmented.png",
    ]
    np.testing.assert_array_equal(read_png(tmp_path / "basn2c08_k3_segmented.png"), expected.segmented)
    labels, info = read_label_png(tmp_path / "basn2c08_k3_labels.png")
    np.testing.assert_array_equal(labels, expected.labels)
    np.testing.assert_array_equal(info.palette[1:, :3], np.round(expected.cluster_centers))
    assert info.palette[0, 3] == 0


def test_segment_json_summary(tmp_path, pngsuite_dir):
    source = pngsuite_dir / "tbbn3p08.png"

    run_cli("segment", source, "-k", "2", "--out", tmp_path)

    summary = json.loads((tmp_path / "tbbn3p08_k2_clusters.json").read_text())
    counts = [cluster["count"] for cluster in summary["clusters"]]
    assert summary["n_clusters"] == 2
    assert summary["random_state"] == 42
    assert summary["image_dtype"] == "uint8"
    assert sum(counts) == summary["clustered_pixels"]
    assert summary["clustered_pixels"] + summary["left_out_pixels"] == 32 * 32
    assert summary["left_out_pixels"] > 0
    assert sum(cluster["fraction"] for cluster in summary["clusters"]) == pytest.approx(1.0)
    assert all(cluster["hex"].startswith("#") and len(cluster["hex"]) == 7 for cluster in summary["clusters"])


def test_segment_16bit_keeps_depth(tmp_path, pngsuite_dir):
    run_cli("segment", pngsuite_dir / "basn2c16.png", "-k", "4", "--out", tmp_path)

    _, _, _, info = pypng.Reader(filename=str(tmp_path / "basn2c16_k4_segmented.png")).read()
    assert info["bitdepth"] == 16


def test_segment_k_list_writes_comparison(tmp_path, pngsuite_dir):
    status = run_cli("segment", pngsuite_dir / "basn2c08.png", "-k", "6,4,2,4", "--out", tmp_path)

    figure, info = read_png_with_info(tmp_path / "basn2c08_comparison.png")
    assert status == 0
    for n_clusters in (6, 4, 2):
        assert (tmp_path / f"basn2c08_k{n_clusters}_labels.png").is_file()
    assert info.is_color
    assert figure.shape[1] > figure.shape[0]


def test_batch_continues_after_bad_files(tmp_path, pngsuite_dir, capsys):
    missing = tmp_path / "absent.png"
    corrupt = pngsuite_dir / "xcsn0g01.png"
    grey = pngsuite_dir / "basn0g08.png"
    good = pngsuite_dir / "basn6a08.png"

    status = run_cli("segment", missing, corrupt, grey, good, "-k", "2", "--out", tmp_path / "out")

    errors = capsys.readouterr().err
    assert status == cli.EXIT_INPUT_FAILED
    assert (tmp_path / "out" / "basn6a08_k2_labels.png").is_file()
    assert f"error: {missing}: file not found" in errors
    assert f"error: {corrupt}:" in errors
    assert "not a valid PNG" in errors
    assert f"error: {grey}:" in errors
    assert "RGB" in errors
    assert "1 of 4 inputs segmented" in errors


def test_existing_outputs_kept_without_overwrite(tmp_path, pngsuite_dir, capsys):
    source = pngsuite_dir / "basn2c08.png"
    existing = tmp_path / "basn2c08_k2_clusters.json"
    existing.write_text("keep me")

    status = run_cli("segment", source, "-k", "2", "--out", tmp_path)

    assert status == cli.EXIT_INPUT_FAILED
    assert existing.read_text() == "keep me"
    assert not (tmp_path / "basn2c08_k2_segmented.png").exists()
    assert "--overwrite" in capsys.readouterr().err


def test_overwrite_replaces_outputs(tmp_path, pngsuite_dir):
    source = pngsuite_dir / "basn2c08.png"
    existing = tmp_path / "basn2c08_k2_clusters.json"
    existing.write_text("replace me")

    status = run_cli("segment", source, "-k", "2", "--out", tmp_path, "--overwrite")

    assert status == 0
    assert json.loads(existing.read_text())["n_clusters"] == 2


def test_same_stem_inputs_do_not_collide(tmp_path, pngsuite_dir, capsys):
    for folder in ("first", "second"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "photo.png").write_bytes((pngsuite_dir / "basn2c08.png").read_bytes())

    status = run_cli(
        "segment", tmp_path / "first" / "photo.png", tmp_path / "second" / "photo.png",
        "-k", "2", "--out", tmp_path / "out",
    )

    assert status == cli.EXIT_INPUT_FAILED
    assert "same file name" in capsys.readouterr().err


def test_folder_input_and_progress_bar(tmp_path, pngsuite_dir, capsys):
    folder = tmp_path / "batch"
    folder.mkdir()
    for index, name in enumerate(["basn2c08", "f00n2c08", "f01n2c08", "f02n2c08"]):
        (folder / f"image{index}.PNG").write_bytes((pngsuite_dir / f"{name}.png").read_bytes())

    status = run_cli("segment", folder, "-k", "2", "--out", tmp_path / "out")

    captured = capsys.readouterr()
    assert status == 0
    assert len(captured.out.split()) == 4 * 3
    assert "segmenting" in captured.err
    assert "4/4" in captured.err


def test_no_progress_bar_for_few_files(tmp_path, pngsuite_dir, capsys):
    run_cli("segment", pngsuite_dir / "basn2c08.png", "-k", "2", "--out", tmp_path)

    assert "segmenting" not in capsys.readouterr().err


def test_empty_folder_reported(tmp_path, capsys):
    (tmp_path / "empty").mkdir()

    status = run_cli("segment", tmp_path / "empty", "--out", tmp_path / "out")

    assert status == cli.EXIT_INPUT_FAILED
    assert "contains no .png files" in capsys.readouterr().err


def test_max_pixels_rejects_file(tmp_path, pngsuite_dir, capsys):
    status = run_cli("segment", pngsuite_dir / "basn2c08.png", "--max-pixels", "1023", "--out", tmp_path)

    assert status == cli.EXIT_INPUT_FAILED
    assert "more than the limit of 1,023 pixels" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["-k", "0"], "invalid k 0"),
        (["-k", "8,x"], "invalid k 'x'"),
        (["--seed", "-1"], "invalid seed -1"),
        (["--method", "slow"], "invalid choice"),
        (["--max-pixels", "0"], "invalid count 0"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, pngsuite_dir, capsys, arguments, message):
    with pytest.raises(SystemExit) as caught:
        run_cli("segment", pngsuite_dir / "basn2c08.png", *arguments, "--out", tmp_path)

    assert caught.value.code == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_out_is_a_file_exit_2(tmp_path, pngsuite_dir, capsys):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("")

    with pytest.raises(SystemExit) as caught:
        run_cli("segment", pngsuite_dir / "basn2c08.png", "--out", not_a_folder)

    assert caught.value.code == cli.EXIT_USAGE
    assert "is a file, not a folder" in capsys.readouterr().err


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as caught:
        run_cli("segment", "--help")

    help_text = " ".join(capsys.readouterr().out.split())
    assert caught.value.code == 0
    for option, default in [
        ("-k K[,K...]", "(default: 8)"),
        ("--seed SEED", "(default: 42)"),
        ("--out DIR", "(default: the current folder)"),
        ("--method {auto,exact,fast}", "(default: auto)"),
        ("--overwrite", "(default: off)"),
        ("--max-pixels N", "(default: $NAPARI_COLOR_KMEANS_MAX_PIXELS if set, else 268435456)"),
        ("--no-progress", "(default: shown)"),
    ]:
        assert option in help_text
        assert default in help_text
    assert "in pixels" in help_text
    assert "exit status" in help_text


def test_console_script_declared():
    pyproject = tomllib.loads((REPOSITORY_ROOT / "pyproject.toml").read_text())

    assert pyproject["project"]["scripts"]["napari-color-kmeans"] == "napari_color_kmeans.cli:main"


def test_runs_without_display_or_qt(tmp_path, pngsuite_dir):
    script = (
        "import sys\n"
        "from napari_color_kmeans.cli import main\n"
        f"status = main(['segment', {str(pngsuite_dir / 'basn2c08.png')!r}, '-k', '3,2', "
        f"'--out', {str(tmp_path)!r}])\n"
        "loaded = sorted(name for name in sys.modules if name.split('.')[0] in "
        "('PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'qtpy', 'napari'))\n"
        "print(status, loaded)\n"
    )
    environment = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    # A Qt backend setting must not matter, because the figure never goes through pyplot.
    environment["MPLBACKEND"] = "QtAgg"

    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=120
    )

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines()[-1] == "0 []"
    assert (tmp_path / "basn2c08_comparison.png").is_file()


def test_module_exit_status(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-m", "napari_color_kmeans.cli", "segment", str(tmp_path / "absent.png")],
        capture_output=True, text=True, timeout=120,
    )

    assert finished.returncode == cli.EXIT_INPUT_FAILED
    assert "file not found" in finished.stderr
