"""Artifacts whose operators the runtime lacks are refused by name, not called corrupt."""

import pytest
import tf_keras as keras

import keras_compress as kc
from keras_compress import cli


@pytest.fixture(scope="module")
def custom_onnx(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper

    tensor = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 3])  # noqa: E731
    graph = helper.make_graph([helper.make_node("MyOp", ["x"], ["y"], domain="com.example")], "g",
                              [tensor("x")], [tensor("y")])
    path = str(tmp_path_factory.mktemp("custom") / "custom.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("com.example", 1)]), path)
    return path


@pytest.fixture(scope="module")
def custom_tflite(tmp_path_factory):
    from tensorflow.lite.tools import flatbuffer_utils

    folder = tmp_path_factory.mktemp("custom")
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    plain = kc.export(dense, str(folder / "plain.tflite"))
    model = flatbuffer_utils.read_model(plain.path)
    code = model.operatorCodes[0]
    code.builtinCode = code.deprecatedBuiltinCode = 32  # CUSTOM
    code.customCode = b"MyOp"
    path = str(folder / "custom.tflite")
    flatbuffer_utils.write_model(model, path)
    return path


@pytest.mark.parametrize("artifact, runtime, operator", [
    ("custom_onnx", "ONNX Runtime", "com.example:MyOp"), ("custom_tflite", "LiteRT", "custom:MyOp")])
def test_an_operator_the_runtime_lacks_is_named(request, capsys, artifact, runtime, operator):
    path = request.getfixturevalue(artifact)
    with pytest.raises(kc.ModelFileError, match=f"uses operators that {runtime} does not have: {operator} "):
        kc.load(path)
    assert cli.main(["inspect", path]) == 2
    error = capsys.readouterr().err
    assert operator in error and "corrupt" not in error
