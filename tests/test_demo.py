import os

import pytest

from keras_compress import cli
from keras_compress.demo import run_demo


@pytest.mark.slow
def test_demo_prunes_two_ways_and_saves_the_models(tmp_path, capsys):
    rows = run_demo(str(tmp_path), epochs=4, fine_tune_epochs=4, verbose=0)
    dense, weight, shrunk, scratch, distilled = rows
    assert weight["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert weight["gzipped_bytes"] * 2.5 < dense["gzipped_bytes"]
    assert shrunk["params"] < 0.4 * dense["params"]
    assert min(weight["accuracy"], shrunk["accuracy"]) > dense["accuracy"] - 0.05
    assert dense["params"] >= 5 * distilled["params"] == 5 * scratch["params"]
    assert distilled["accuracy"] > 0.8 and scratch["accuracy"] > 0.8
    assert sorted(os.listdir(tmp_path)) == ["dense.keras", "filter_50_shrunk.keras", "student_distilled.keras",
                                            "weight_80.keras"]


def test_demo_command_rejects_bad_epochs(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--epochs", "0"]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err
    assert not os.listdir(tmp_path)
