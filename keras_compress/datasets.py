"""Data that ships inside a package, for demos and tests (no downloads)."""

import numpy as np

__all__ = ["digits", "tokens"]


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


def tokens(*, rows: int = 2000, maxlen: int = 32, vocab_size: int = 1000, test_size: float = 0.25,
           seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A binary text-classification task made of token ids, for sequence models (no downloads).

    Each row is `maxlen` random word ids in which one, three or five marker ids stand; ids 2-5 mark
    "positive", 6-9 "negative", and the label says whether positive markers outnumber negative
    ones. It is learnt from the tokens alone, as a sentiment dataset is, in a few epochs.

    Args:
        rows: sequences in all, train and test.
        maxlen: tokens per sequence (>= 5).
        vocab_size: ids are in `[0, vocab_size)` (> 10); 0 and 1 are never used.
        test_size: fraction of the rows held out for testing, in (0, 1).
        seed: seed of the generator.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: int32 ids of shape `(n, maxlen)` and int64
        labels 0 or 1.

    Example:
        >>> (x_train, y_train), _ = tokens(rows=100, maxlen=16)
        >>> x_train.shape, x_train.dtype.name, sorted(set(y_train.tolist()))
        ((75, 16), 'int32', [0, 1])
    """
    if not isinstance(rows, int) or rows < 8:
        raise ValueError(f"rows must be an int >= 8, got {rows!r}")
    if not isinstance(maxlen, int) or maxlen < 5:
        raise ValueError(f"maxlen must be an int >= 5 (room for five markers), got {maxlen!r}")
    if not isinstance(vocab_size, int) or vocab_size <= 10:
        raise ValueError(f"vocab_size must be an int > 10 (ids 2-9 are the markers), got {vocab_size!r}")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    rng = np.random.default_rng(seed)
    ids = rng.integers(10, vocab_size, (rows, maxlen)).astype("int32")
    markers = rng.choice([1, 3, 5], rows)  # an odd count: never a tie
    positive = rng.binomial(markers, 0.5)
    for row, (count, positives) in enumerate(zip(markers, positive)):
        places = rng.choice(maxlen, count, replace=False)
        ids[row, places] = np.where(np.arange(count) < positives, rng.integers(2, 6, count),
                                    rng.integers(6, 10, count))
    labels = (2 * positive > markers).astype("int64")
    held_out = int(round(rows * test_size))
    return (ids[held_out:], labels[held_out:]), (ids[:held_out], labels[:held_out])
