"""The scripts in examples/ run as a user runs them, and check their own claims."""

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parents[1] / "examples").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs(script, tmp_path):
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def test_every_workflow_has_an_example():
    assert [path.stem for path in EXAMPLES] == ["distillation", "export_and_compare", "post_training_int8",
                                                "prune_in_fit", "quantization_aware_training",
                                                "transformer_text_classification"]
