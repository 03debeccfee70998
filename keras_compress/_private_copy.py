"""Private copies of model files from elsewhere, so that what is screened is what is loaded.

Keras opens a model file by its path. Screening the file and then letting Keras open the
same path again leaves a window in which another process can swap the file. A private copy
(in a folder only this user can read) is screened and loaded instead: both read the same
bytes. The copy takes regular files only; a symlink that leads outside a SavedModel folder,
a named pipe or a device is refused, because each would make loading read something the
folder does not hold (or wait forever).
"""

import contextlib
import os
import shutil
import stat
import tempfile

from keras_compress.errors import ModelFileError

__all__ = ["check_regular_tree", "private_copy"]

_CHUNK = 1 << 20


def _kind_of(mode):
    return ("a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")


def check_regular_tree(path):
    """Refuses a file or folder that holds anything but regular files and folders inside it:
    named pipes, devices, sockets, or symlinks leading outside `path`."""
    root = os.path.realpath(path)
    mode = os.stat(path).st_mode
    if not stat.S_ISDIR(mode):
        if not stat.S_ISREG(mode):
            raise ModelFileError(f"{path} is {_kind_of(mode)}: give a model file or a SavedModel folder.")
        return
    for folder, names, files in os.walk(path):
        for name in names + files:
            entry = os.path.join(folder, name)
            real, inside = os.path.realpath(entry), os.path.relpath(entry, path)
            if os.path.islink(entry) and os.path.commonpath([root, real]) != root:
                raise ModelFileError(f"{path} holds a symlink {inside} -> {real}, which leads outside the "
                                     "folder: copy what it points to into the folder, or remove the link.")
            if not os.path.exists(real):
                raise ModelFileError(f"{path} holds a broken symlink {inside}.")
            mode = os.stat(real).st_mode
            if os.path.islink(entry) and stat.S_ISDIR(mode):
                raise ModelFileError(f"{path} holds a symlinked folder {inside}: a SavedModel folder holds "
                                     "its own folders; copy it in instead.")
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise ModelFileError(f"{path} holds {inside}, which is {_kind_of(mode)}: a SavedModel folder "
                                     "holds regular files only.")


def _copy_file(source, target, flags=0):
    """Copies a regular file through one open descriptor (what is copied is what was opened)."""
    descriptor = os.open(source, os.O_RDONLY | os.O_NONBLOCK | flags)  # a pipe swapped in must not block
    with open(descriptor, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            raise ModelFileError(f"{source} is {_kind_of(os.fstat(reader.fileno()).st_mode)}: give a model "
                                 "file.")
        with open(target, "xb") as writer:
            shutil.copyfileobj(reader, writer, _CHUNK)


@contextlib.contextmanager
def private_copy(path):
    """Yields the path of a private copy of the file or SavedModel folder at `path` (same
    basename, in a folder only this user can read), removed afterwards."""
    check_regular_tree(path)
    folder = tempfile.mkdtemp(prefix="keras_compress-load-")  # mode 0700
    try:
        target = os.path.join(folder, os.path.basename(os.path.abspath(path)) or "model")
        try:
            _copy(path, target)
        except OSError as error:
            raise ModelFileError(f"Cannot make the private copy of {path} that loading reads, in {folder} "
                                 f"({error.strerror or error}): free space there, or point TMPDIR to a "
                                 "folder with room.") from None
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _copy(path, target):
    if not os.path.isdir(path):
        _copy_file(path, target)
        return
    root = os.path.realpath(path)
    os.mkdir(target)
    for parent, names, files in os.walk(path):
        into = os.path.join(target, os.path.relpath(parent, path))
        for name in names:
            os.mkdir(os.path.join(into, name))
        for name in files:
            # Checked again as it is copied (the folder may change after the check): a link must
            # still lead inside, and what it resolved to must not turn into a link meanwhile.
            entry = os.path.join(parent, name)
            real = os.path.realpath(entry)
            if os.path.commonpath([root, real]) != root:
                raise ModelFileError(f"{path} holds a symlink {os.path.relpath(entry, path)} -> {real}, "
                                     "which leads outside the folder.")
            _copy_file(real, os.path.join(into, name), os.O_NOFOLLOW)
