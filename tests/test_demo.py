import json
import os

import pytest

from keras_compress import cli


@pytest.mark.slow
def test_quick_demo_runs_the_whole_pipeline_and_writes_a_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--quick", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| variant | format | precision")
    assert "TensorRT: " in printed and f"{out}/report.png" in printed
    files = set(os.listdir(out))
    assert {"report.md", "report.json", "report.png"} <= files
    for stem in ("teacher", "teacher_shrunk", "student", "student_pruned", "student_pruned_int8",
                 "student_pruned_clustered_int8"):
        assert {f"{stem}.keras", f"{stem}.onnx", f"{stem}.tflite"} <= files
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".partial")]
    report = json.loads((out / "report.json").read_text())
    rows = {row["name"]: row for row in report["rows"]}
    assert len(rows) == 13 and list(rows)[0] == "teacher keras"
    teacher, shrunk = rows["teacher onnx"], rows["teacher shrunk onnx"]
    student, int8 = rows["student onnx"], rows["student pruned int8 tflite"]
    assert teacher["accuracy"] > 0.9 and student["accuracy"] > 0.85
    assert shrunk["params"] < 0.35 * teacher["params"]
    assert int8["precision"] == "int8" and int8["sparsity"] == pytest.approx(0.7, abs=0.02)
    assert int8["gzipped_bytes"] * 20 < teacher["gzipped_bytes"]
    assert rows["student pruned int8 onnx"]["agreement"] > 0.85
    clustered = rows["student pruned clustered int8 tflite"]
    assert clustered["precision"] == "int8" and clustered["sparsity"] == pytest.approx(0.7, abs=0.02)
    assert clustered["gzipped_bytes"] < int8["gzipped_bytes"] and clustered["agreement"] > 0.85
    assert all(row["memory_bytes"] for row in report["rows"])
    # Without a GPU the report says TensorRT was skipped, and why.
    assert "TensorRT: " in (out / "report.md").read_text()


def test_demo_refuses_a_non_empty_folder_before_any_work(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert cli.main(["demo", "--out", str(tmp_path), "--quick"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["keep.txt"]
    (tmp_path / "file").write_text("")
    assert cli.main(["demo", "--out", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err
