"""Writing files so that a reader never sees half of one."""

import os

__all__ = ["write_atomically"]


def write_atomically(path, write):
    """Calls `write(temporary path)` beside `path`, then moves the result into place."""
    partial = f"{path}.partial"
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
