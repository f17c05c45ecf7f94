"""Linux inotify on one directory, through libc: a file descriptor that turns readable when something in it changes.

The config watcher uses it only as a wake-up; whether the file changed is still decided by
``stat`` (inode, size, mtime), so a missed or coalesced event costs at most one
poll interval. Watching the directory rather than the file catches editors and
ConfigMaps that rename a new file over the old one.
"""

import ctypes
import ctypes.util
import os
import struct

__all__ = ["DirectoryWatch"]

# <sys/inotify.h>
_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x002, 0x004, 0x008
_IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x080, 0x100, 0x200
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_EVENT = struct.Struct("iIII")
_MASK = _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE


class DirectoryWatch:
    """An inotify descriptor watching ``directory``; ``open()`` returns None where inotify is unavailable."""

    def __init__(self, fd, directory):
        self.fd, self.directory = fd, directory

    @classmethod
    def open(cls, directory):
        """Watch ``directory``, or None (not Linux, no libc symbol, or the kernel refused: then poll instead)."""
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            init, add = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError, TypeError):
            return None
        fd = init(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return None
        if add(fd, os.fsencode(directory), _MASK) < 0:
            os.close(fd)
            return None
        return cls(fd, directory)

    def drain(self):
        """Names of the entries that changed since the last call (empty once nothing is pending)."""
        names = set()
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return names
            if not buf:
                return names
            # struct inotify_event: int wd; uint32 mask, cookie, len; char name[len] (NUL-padded).
            at = 0
            while at + _EVENT.size <= len(buf):
                _, _, _, length = _EVENT.unpack_from(buf, at)
                at += _EVENT.size
                names.add(os.fsdecode(buf[at:at + length].rstrip(b"\0")))
                at += length

    def close(self):
        """Release the descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self):
        return f"DirectoryWatch(fd={self.fd}, directory={str(self.directory)!r})"
