"""TensorFlow warns about "frequent retracing" when functions sharing one code object trace
often. Functions the package makes once per model (a model's compiled forward pass, a pruned
model's re-masking step) share their code across models by design, and each traces once:
for them that warning is noise, so it is filtered out, for those functions only."""

import logging

__all__ = ["one_trace_per_model"]

_NAMES: set[str] = set()


class _OneTracePerModel(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        return "triggered tf.function retracing" not in message or not any(name in message for name in _NAMES)


def one_trace_per_model(qualified_name):
    """Silences TensorFlow's retracing warning for functions whose name contains
    `qualified_name` (e.g. "_compiled.<locals>")."""
    import tensorflow as tf

    if not _NAMES:
        tf.get_logger().addFilter(_OneTracePerModel())
    _NAMES.add(qualified_name)
