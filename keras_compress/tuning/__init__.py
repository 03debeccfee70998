"""Search for the smallest or fastest compressed model that keeps its accuracy (keras-tuner)."""

from keras_compress.tuning.result import SearchResult
from keras_compress.tuning.search import search
from keras_compress.tuning.space import default_space

__all__ = [
    "SearchResult",
    "default_space",
    "search",
]
