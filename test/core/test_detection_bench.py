"""``lkd bench detect`` measures what exists and says why it skipped the rest."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.toy_coco import TOY_CLASSES, write_toy_coco

from lkd_perception.cli import main
from lkd_perception.detection.bench import onnx_cost
from lkd_perception.detection.export import export_leyolo
from lkd_perception.detection.flops import model_cost
from lkd_perception.detection.leyolo import LeYOLO


@pytest.mark.slow
def test_onnx_cost_agrees_with_the_pytorch_count(tmp_path):
    model = LeYOLO("n", nc=4)
    path = export_leyolo(model, tmp_path / "n.onnx", 96, list(TOY_CLASSES))
    params, gflops, uncounted = onnx_cost(path)
    assert uncounted == 0
    torch_cost = model_cost(model, 96)
    assert gflops == pytest.approx(torch_cost.gflops, rel=0.01)
    # BN folds into the convolutions in ONNX: fewer stored numbers, same order of magnitude
    assert 0.9 * torch_cost.params < params <= torch_cost.params


@pytest.mark.slow
def test_bench_command(tmp_path, capsys):
    ann = write_toy_coco(tmp_path / "data", 2, seed=5, width=96, height=64)
    torch.manual_seed(0)
    onnx_path = export_leyolo(LeYOLO("n", nc=4), tmp_path / "m.onnx", 64, list(TOY_CLASSES))
    out = tmp_path / "bench.json"
    assert main(["bench", "detect", "--gt", str(ann), "--sizes", "64", "--leyolo-sizes", "n", "--runs", "2",
                 "--threads", "1", "--onnx", f"toy={onnx_path}", "--onnx", f"absent={tmp_path / 'none.onnx'}",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {r["name"]: r for r in report["models"]}
    arch = rows["leyolo_n (architecture, nc=4)"]
    assert arch["latency"][0]["input_size"] == 64 and arch["latency"][0]["median_ms"] > 0 and arch["gflops"]["64"] > 0
    toy = rows["toy"]
    assert toy["family"] == "leyolo" and toy["map50_95"] is not None and toy["end_to_end_ms"] > 0
    assert rows["absent"]["note"].startswith("skipped") and "none.onnx" in rows["absent"]["note"]
    assert "leyolo_n" in capsys.readouterr().err  # the table


@pytest.mark.slow
def test_bench_on_real_photographs_puts_every_shipped_model_side_by_side(tmp_path, capsys):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    photos = [str(root / "test" / "fixtures" / "detection_real" / n) for n in ("messi5.jpg", "basketball2.png")]
    baseline = export_leyolo(LeYOLO("n", nc=80), tmp_path / "base.onnx", 320, [str(i) for i in range(80)])
    out = tmp_path / "real.json"
    assert (
        main(
            [
                "bench",
                "detect",
                "--photos",
                *photos,
                "--runs",
                "2",
                "--threads",
                "1",
                "--baseline",
                f"base={baseline}",
                "--onnx",
                f"absent={tmp_path / 'none.onnx'}",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    rows = {r["name"]: r for r in report["models"]}
    assert report["baseline"] == "base" and rows["base"]["vs_baseline"] == pytest.approx(1.0)
    assert {
        "leyolo_n_coco (320)",
        "leyolo_n_coco_480",
        "deimv2_atto_coco (320)",
        "deimv2_femto_coco (416)",
        "leyolo_n_sim (simulator classes)",
    } <= set(rows)
    for name in ("leyolo_n_coco (320)", "leyolo_n_coco_480", "deimv2_atto_coco (320)", "deimv2_femto_coco (416)"):
        row = rows[name]
        assert row["session_ms"] > 0 and row["detector_ms"] > 0 and row["vs_baseline"] > 0
        assert row["session_p10_ms"] <= row["session_ms"] <= row["session_p90_ms"]
        assert row["session_cpu_ms"] > 0 and row["cpu_vs_baseline"] > 0
        assert row["people"]["messi5.jpg"] >= 1 and row["people"]["basketball2.png"] >= 1, name
    # fidelity is measured, not assumed: the 320 import against the official raw outputs, DEIMv2
    # decoding against the file's own outputs
    assert rows["leyolo_n_coco (320)"]["agreement"]["box_px_max"] <= 1e-3
    assert rows["leyolo_n_coco (320)"]["agreement"]["score_max"] <= 1e-4
    assert rows["deimv2_atto_coco (320)"]["agreement"]["label_or_count_mismatches"] == 0
    assert sum(rows["leyolo_n_sim (simulator classes)"]["people"].values()) == 0  # it knows no COCO person
    assert rows["absent"]["note"].startswith("skipped")
    assert "agreement" in capsys.readouterr().err
