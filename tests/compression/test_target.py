"""`kc.Target`: bounds checked when made, read back in the measured units."""

import pytest

import keras_compress as kc


def test_bounds_are_read_in_measured_units_and_misses_named():
    target = kc.Target(latency_ms=2.0, size_kb=10, runtime="onnx", threads=2)
    assert target.bounds() == {"ms": 2.0, "bytes": 10240}
    assert target.missed({"ms": 2.5, "bytes": 9000, "macs": 1}) == {"ms": (2.5, 2.0)}
    assert target.describe() == "2 ms, 10.0 KiB on onnx, batch 1, 2 thread(s)"
    assert target.values({"ms": 0.012345, "bytes": 4096, "macs": 0}) == "0.01235 ms, 4.0 KiB"


@pytest.mark.parametrize("kwargs, message", [
    ({}, "at least one bound"),
    ({"latency_ms": 0}, "latency_ms must be a positive number"),
    ({"size_kb": "10"}, "size_kb must be a positive number"),
    ({"macs": True}, "macs must be a positive number"),
    ({"latency_ms": 1, "runtime": "tensorrt"}, "runtime must be one of"),
    ({"latency_ms": 1, "batch_size": 0}, "batch_size must be a positive integer"),
    ({"latency_ms": 1, "threads": 1.5}, "threads must be a positive integer"),
])
def test_a_target_that_cannot_be_measured_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kc.Target(**kwargs)
