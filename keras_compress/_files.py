"""Writing files so that a reader never sees half of one, and no writer's death leaves litter.

Work in progress lives in a folder `.kc-<pid>-<random>.partial` beside the target, which its
writer holds under an exclusive `flock` for as long as it works. The kernel drops the lock
when the writer dies, however it dies, so a folder whose lock can be taken belongs to nobody
and is removed by the next writer in that folder. The lock, not the process id, says who is
alive: a writer in another container (another PID namespace) sharing the folder holds its
lock too.
"""

import contextlib
import fcntl
import os
import re
import shutil
import tempfile

__all__ = ["partial_folder", "write_atomically"]

# Folders (and, from older versions, files) of writes in progress.
_PARTIAL = re.compile(r"^\.kc-\d+-\w+\.partial$")


def _abandoned(path):
    """Whether no live writer holds `path` (its lock can be taken)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False  # gone already, or not ours to judge
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(descriptor)


def _remove_abandoned(folder):
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if _PARTIAL.match(name) and _abandoned(path):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)


@contextlib.contextmanager
def partial_folder(folder):
    """Yields a new, locked work folder in `folder` (removed afterwards), after removing those
    that writers who died left there. The name is short, whatever the target's name."""
    _remove_abandoned(folder)
    # Made and locked under a name cleaners ignore, then renamed: a visible folder is always locked.
    hidden = tempfile.mkdtemp(prefix=".kc-new-", dir=folder)
    descriptor = os.open(hidden, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError:  # a file system without flock (some NFS, FUSE): others cannot lock it either,
            pass  # so they judge it alive, and it is left to its writer
        path = os.path.join(folder, os.path.basename(hidden).replace(".kc-new-", f".kc-{os.getpid()}-", 1)
                            + ".partial")
        os.rename(hidden, path)
        hidden = path
        yield path
    finally:
        shutil.rmtree(hidden, ignore_errors=True)
        os.close(descriptor)


def write_atomically(path, write):
    """Calls `write(temporary path)` in a locked work folder beside `path`, then moves the
    result into place."""
    with partial_folder(os.path.dirname(os.path.abspath(path))) as work:
        partial = os.path.join(work, os.path.basename(path))
        write(partial)
        os.replace(partial, path)
