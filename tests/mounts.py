"""Real filesystems for storage-error tests: a size-limited tmpfs, and an ext4 image that an error turns read-only.

Both need root (``mount``); without it the test is skipped with the reason,
never faked. Every mount is undone on the way out, lazily if a file is still open.
"""

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["tmpfs", "ext4_image", "remount", "fill", "fs_error"]


def _run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _need_root(what):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip(f"{what} needs root and mount(8)")


def _umount(path):
    if _run("umount", str(path)).returncode != 0:
        _run("umount", "-l", str(path))


@contextmanager
def tmpfs(path, size):
    """Mount a tmpfs of ``size`` (mount syntax, e.g. ``"1m"``) at ``path``; yields the path."""
    _need_root("a size-limited tmpfs")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        _umount(path)


def remount(path, options):
    """``mount -o remount,OPTIONS PATH``; fails the test with mount's message if refused."""
    done = _run("mount", "-o", f"remount,{options}", str(path))
    assert done.returncode == 0, f"remount {options} of {path} failed: {done.stderr}"


def fill(directory):
    """Write a filler file in ``directory`` until the filesystem is full; returns its path."""
    filler = Path(directory) / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    block = b"\xff" * 4096
    try:
        for _ in range(1 << 20):  # bounded: 4 GiB at most
            os.write(fd, block)
    except OSError as exc:
        assert exc.errno == 28, exc  # ENOSPC, the point of the exercise
    else:
        raise AssertionError(f"{directory} never filled up")
    finally:
        os.close(fd)
    return filler


@contextmanager
def ext4_image(path, size_mb=16):
    """Mount a fresh ext4 loop image with ``errors=remount-ro`` at ``path``; yields ``(path, sysfs dir)``."""
    _need_root("an ext4 loop image")
    if shutil.which("mkfs.ext4") is None or not Path("/dev/loop-control").exists():
        pytest.skip("needs mkfs.ext4 and loop devices")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    image = path.with_suffix(".img")
    with open(image, "wb") as fh:
        fh.truncate(size_mb << 20)
    made = _run("mkfs.ext4", "-q", "-F", str(image))
    assert made.returncode == 0, made.stderr
    done = _run("mount", "-o", "loop,errors=remount-ro", str(image), str(path))
    if done.returncode != 0:
        pytest.skip(f"cannot loop-mount an ext4 image here: {done.stderr.strip()}")
    try:
        device = next(line.split()[0] for line in Path("/proc/mounts").read_text().splitlines()
                      if line.split()[1] == str(path))
        sysfs = Path("/sys/fs/ext4") / Path(device).name
        if not (sysfs / "trigger_fs_error").exists():
            pytest.skip("this kernel has no ext4 trigger_fs_error")
        yield path, sysfs
    finally:
        _umount(path)
        image.unlink(missing_ok=True)


def fs_error(sysfs):
    """Make the kernel record an ext4 error, which with ``errors=remount-ro`` turns the filesystem read-only."""
    (sysfs / "trigger_fs_error").write_text("valkyrie storage-error test\n")
