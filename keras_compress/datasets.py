"""Data that ships inside a package, for demos and tests (no downloads)."""

import numpy as np

__all__ = ["digits"]


def digits(*, size: int | None = None, channels: int = 1, test_size: float = 0.25,
           seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's bundled handwritten digits, split into train and test arrays.

    The 1,797 images of 8x8 pixels are scaled to [0, 1] and given a channel axis.

    Args:
        size: None keeps 8x8; an int resizes (bilinear) to `size`x`size`, e.g. 32
            for standard convnets.
        channels: 1, or 3 to repeat the grey channel for RGB models.
        test_size: fraction of the images held out for testing, in (0, 1).
        seed: seed of the stratified split.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: float32 images of shape
        `(n, size, size, channels)` and int64 labels 0-9.

    Example:
        >>> (x_train, y_train), (x_test, y_test) = digits()
        >>> x_train.shape[1:], x_train.dtype.name
        ((8, 8, 1), 'float32')
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    if size is not None and (not isinstance(size, int) or size < 8):
        raise ValueError(f"size must be None or an int >= 8, got {size!r}")

    data = load_digits()
    images = (data.images / 16.0).astype("float32")[..., np.newaxis]
    if size is not None and size != 8:
        import tensorflow as tf

        images = tf.image.resize(images, (size, size), method="bilinear").numpy()
        images = np.clip(images, 0.0, 1.0)
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    labels = data.target.astype("int64")
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_size, random_state=seed, stratify=labels
    )
    return (x_train, y_train), (x_test, y_test)
