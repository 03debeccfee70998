"""Writing files so that a reader never sees half of one."""

import os
import secrets

__all__ = ["write_atomically"]


def write_atomically(path, write):
    """Calls `write(temporary path)` beside `path`, then moves the result into place. The
    temporary name is short, so that any name the file system allows for `path` works."""
    partial = os.path.join(os.path.dirname(os.path.abspath(path)),
                           f".kc-{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
