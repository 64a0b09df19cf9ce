"""``lkd lines``, ``lkd evaluate lines`` and ``lkd bench lines`` end to end on small files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from lkd_perception.cli import main
from lkd_perception.lines.synthetic import render_scene


@pytest.fixture()
def scenes(tmp_path):
    rng = np.random.default_rng(3)
    gt = {}
    for i in range(2):
        s = render_scene(rng, 120, 160)
        name = f"img{i}.png"
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(s.rgb, cv2.COLOR_RGB2BGR))
        gt[name] = s.segments.tolist()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    return tmp_path, gt


def test_lines_writes_the_contract_format(scenes):
    folder, gt = scenes
    out = folder / "pred.json"
    rc = main(["lines", str(folder / "img0.png"), str(folder / "img1.png"), "--out", str(out),
               "--set", "input_width=160", "--set", "input_height=128", "--set", "threads=1"])
    assert rc == 0
    pred = json.loads(out.read_text())
    assert set(pred) == {"img0.png", "img1.png"}
    rows = [r for v in pred.values() for r in v]
    assert rows and all(len(r) == 5 for r in rows)
    # and the evaluation reads every prediction and ground-truth line of those files; the scene's line is found
    # (measured sAP10 100: the detector's best-scored segment lies on it)
    metrics_file = folder / "m.json"
    assert main(["evaluate", "lines", "--pred", str(out), "--gt", str(folder / "gt.json"),
                 "--out", str(metrics_file)]) == 0
    m = json.loads(metrics_file.read_text())
    assert m["images"] == 2 and m["predictions"] == len(rows) and m["ground_truth"] == sum(len(v) for v in gt.values())
    assert m["sap10"] > 50.0 and m["f_h"] > 50.0


def test_evaluate_ground_truth_against_itself(scenes):
    folder, gt = scenes
    pred = {k: [row + [1.0] for row in v] for k, v in gt.items()}
    (folder / "self.json").write_text(json.dumps(pred))
    out = folder / "m.json"
    # list-form ground truth: image sizes come from the image files beside gt.json
    assert main(["evaluate", "lines", "--pred", str(folder / "self.json"), "--gt", str(folder / "gt.json"),
                 "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["sap5"] == pytest.approx(100.0) and m["sap10"] == pytest.approx(100.0)
    assert m["f_h"] == pytest.approx(100.0)


def test_evaluate_reports_bad_files(scenes, capsys):
    folder, _ = scenes
    (folder / "bad.json").write_text('{"img0.png": [[1, 2, 3]]}')
    assert main(["evaluate", "lines", "--pred", str(folder / "bad.json"), "--gt", str(folder / "gt.json")]) == 2
    assert "expected finite rows of 5 numbers" in capsys.readouterr().err
    assert main(["lines", str(folder / "missing.png")]) == 2


@pytest.mark.slow
def test_bench_runs_every_method_on_the_same_images(tmp_path):
    out = tmp_path / "bench.json"
    rc = main(["bench", "lines", "--source", "synthetic", "--count", "2", "--width", "160", "--height", "120",
               "--methods", "lsdnet_cpu,opencv_lsd,opencv_fld", "--out", str(out),
               "--set", "input_width=160", "--set", "input_height=128", "--set", "threads=1"])
    assert rc == 0
    result = json.loads(out.read_text())
    rows = {r["method"]: r for r in result["methods"]}
    assert set(rows) == {"lsdnet_cpu", "opencv_lsd", "opencv_fld"}
    for r in rows.values():
        assert r["available"], r["note"]
        assert r["fps"]["640x480"] > 0 and r["peak_rss_mb"] > 0
        assert r["metrics"]["images"] == 2


@pytest.mark.slow
def test_bench_measures_a_model_file_beside_the_shipped_ones(tmp_path):
    out = tmp_path / "bench.json"
    light = str(Path(__file__).resolve().parents[2] / "models" / "lsdnet.onnx")
    rc = main(["bench", "lines", "--source", "synthetic", "--count", "1", "--width", "160", "--height", "120",
               "--methods", f"model:{light},model:{tmp_path / 'none.onnx'}", "--out", str(out),
               "--set", "input_width=160", "--set", "input_height=128", "--set", "threads=1"])
    assert rc == 0
    rows = {r["method"]: r for r in json.loads(out.read_text())["methods"]}
    assert rows[f"model:{light}"]["available"] and rows[f"model:{light}"]["metrics"]["images"] == 1
    assert not rows[f"model:{tmp_path / 'none.onnx'}"]["available"]


@pytest.mark.slow
def test_bench_on_the_hand_labelled_photographs(tmp_path):
    gt = Path(__file__).resolve().parents[1] / "fixtures" / "lines_real" / "gt.json"
    out = tmp_path / "bench.json"
    rc = main(["bench", "lines", "--source", "labelled", "--gt", str(gt), "--methods", "lsdnet_cpu,opencv_lsd",
               "--out", str(out), "--set", "threads=1"])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["heldout"]["images"] == 5
    for r in result["methods"]:
        assert r["available"], r["note"]
        assert r["metrics"]["images"] == 5 and r["metrics"]["ground_truth"] == 127
    assert main(["bench", "lines", "--source", "labelled", "--methods", "opencv_lsd"]) == 2  # no --gt


def test_config_from_a_ros_parameter_file(scenes):
    folder, _ = scenes
    params = folder / "vehicle.yaml"
    params.write_text("/**:\n  ros__parameters:\n    sensor_qos_depth: 1\n"
                      "line_node:\n  ros__parameters:\n    input_width: 160\n    input_height: 128\n"
                      "    threads: 1\n    heat_threshold: 1.0\n")
    out = folder / "pred.json"
    assert main(["lines", str(folder / "img0.png"), "--config", str(params), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["img0.png"] == []  # no heat is above 1: the file was applied
    assert main(["lines", str(folder / "img0.png"), "--set", "no_such_setting=1"]) == 2


def test_train_on_labelled_photographs(tmp_path, capsys):
    gt = str(Path(__file__).resolve().parents[1] / "fixtures" / "lines_real_val" / "gt.json")
    out = tmp_path / "run"
    common = ["train", "lines", "--steps", "2", "--batch", "2", "--crop", "64", "--widths", "4,8,8,16",
              "--labelled", gt, "--out", str(out)]
    assert main(common + ["--labelled-fraction", "0.5"]) == 0
    assert (out / "checkpoint.pt").is_file()
    log = json.loads((out / "log.json").read_text())
    assert log["settings"]["labelled"] == [gt] and log["settings"]["labelled_fraction"] == 0.5
    assert log["history"][-1]["step"] == 2
    # a crop larger than the smallest labelled image (256x256), or shares above 1, are refused
    assert main(common[:7] + ["320"] + common[8:]) == 2
    assert "smaller than the crop" in capsys.readouterr().err
    too_much = ["--labelled-fraction", "0.8", "--sim-fraction", "0.4", "--sim-cache", str(tmp_path / "none.npz")]
    assert main(common + too_much) == 2
    assert "must not exceed 1" in capsys.readouterr().err
