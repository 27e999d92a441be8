"""Crash-safe files for training runs: atomic writes, checkpoint manifests, verification.

Every artefact of a run (parameters, the ``.params.json`` architecture sidecar, optimizer
states, the training state, ``last``/``best`` copies, ``log.json``, ``curves.png``) is written
by :func:`atomic_file`: into a temporary file ``.tmp-<pid>-<name>`` in the same folder, flushed
and fsynced, renamed over the final name, then the folder fsynced. A process killed at any
point leaves either the old file or the new one, never a truncated one (plus, at worst, a
``.tmp-*`` file that :func:`remove_stale_temporaries` deletes on the next start).

A checkpoint ``<stem>`` (e.g. ``epoch_0003``) is several files; it is complete only when its
manifest ``<stem>.manifest.json`` exists (written last, atomically) and every file it lists
has the size and SHA-256 it records (:func:`verify`). :func:`newest_complete` is what
``frcnn-train --resume`` uses.

Test-only fault injection: the environment variable ``FRCNN_FAULT_AT=<label>:<n>[:<action>]``
makes the ``n``-th (1-based) call of :func:`fault_point` with that label, in this process,
either SIGKILL the process (action ``kill``, the default) or raise ``OSError(ENOSPC)``
(action ``enospc``). Labels: ``iter`` (inside a training iteration, after the backward and
before the update), ``eval`` (each validation batch), ``write`` (each atomic file write, after
the temporary file's data and before its rename), ``rename`` (after a rename, before the
folder's fsync). With ``FRCNN_FAULT_RANK=<r>`` only the worker of that rank (a
``dist`` kvstore) acts. Unset, it costs one dict lookup; do not set it outside tests.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import signal
import sys
from typing import Any, Iterable, Iterator, List, Optional, Tuple

MANIFEST_FORMAT = 1
_COUNTS = {}
FAULT_RANK = 0  # this process's worker rank (frcnn-train sets it): FRCNN_FAULT_RANK


class CheckpointError(Exception):
    """A checkpoint file cannot be written or is not what it should be (the message names
    the file and the problem)."""


# ----------------------------------------------------------------------------- fault hook

def _fault_spec():
    spec = os.environ.get("FRCNN_FAULT_AT", "")
    if not spec:
        return None
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[1].isdigit():
        raise SystemExit("FRCNN_FAULT_AT must be LABEL:N[:kill|enospc], got %r" % spec)
    return parts[0], int(parts[1]), (parts[2] if len(parts) == 3 else "kill")


def fault_point(label: str, detail: str = "") -> None:
    """Test-only: see the module docstring (FRCNN_FAULT_AT)."""
    spec = _fault_spec()
    if spec is None or spec[0] != label:
        return
    only = os.environ.get("FRCNN_FAULT_RANK")
    if only is not None and int(only) != FAULT_RANK:
        return
    _COUNTS[label] = _COUNTS.get(label, 0) + 1
    if _COUNTS[label] != spec[1]:
        return
    sys.stderr.write("FRCNN_FAULT_AT: %s at %s #%d %s\n" % (spec[2], label, spec[1], detail))
    sys.stderr.flush()
    if spec[2] == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), detail)
    os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------- atomic writes

def fsync_dir(folder: str) -> None:
    """fsync a folder (its entries: renames and new files) where the OS allows it."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory
    finally:
        os.close(fd)


def _tmp_name(path):
    folder, name = os.path.split(os.path.abspath(path))
    # keeps the extension (writers such as matplotlib pick the format from it)
    return os.path.join(folder, ".tmp-%d-%s" % (os.getpid(), name))


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[str]:
    """``with atomic_file(path) as tmp: write(tmp)``: whatever is written to ``tmp`` replaces
    ``path`` atomically when the block ends without an exception (data fsynced before the
    rename, the folder after). On an exception the temporary file is removed and a
    :class:`CheckpointError` naming ``path`` is raised (the old ``path`` is untouched)."""
    tmp = _tmp_name(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        fault_point("write", os.path.basename(path))
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, (KeyboardInterrupt, SystemExit, CheckpointError)):
            raise
        raise CheckpointError("cannot write %s: %s" % (path, describe_error(e))) from e
    fault_point("rename", os.path.basename(path))
    fsync_dir(folder)


def describe_error(e: BaseException) -> str:
    """The reason in an exception, one line: the OS error, or the last line of MXNet's."""
    if isinstance(e, OSError) and e.errno is not None:
        return "%s (errno %d)" % (os.strerror(e.errno), e.errno)
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    # MXNetError: "Traceback ...", C++ frames, then "MXNetError: Check failed: ...: why"
    err = [ln for ln in lines if ln.startswith("MXNetError:")]
    if err:
        return err[-1].split(": ")[-1]
    lines = [ln for ln in lines if not ln.startswith(("Traceback", "File ", "["))]
    return lines[0] if lines else type(e).__name__


def write_bytes(path: str, data: bytes) -> None:
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_json(path: str, obj: Any, **kw: Any) -> None:
    write_bytes(path, (json.dumps(obj, **kw) + "\n").encode("utf-8"))


def copy_file(src: str, dst: str) -> None:
    """Atomic copy of src to dst."""
    with atomic_file(dst) as tmp:
        with open(src, "rb") as fi, open(tmp, "wb") as fo:
            while True:
                chunk = fi.read(1 << 20)
                if not chunk:
                    break
                fo.write(chunk)


def remove_stale_temporaries(folder: str) -> List[str]:
    """Removes ``.tmp-*`` files a killed writer left in ``folder``; returns their names."""
    gone = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(".tmp-"):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))
                    gone.append(name)
    return gone


# ----------------------------------------------------------------------------- manifests

def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(folder: str, stem: str) -> str:
    return os.path.join(folder, stem + ".manifest.json")


def invalidate(folder: str, stem: str) -> None:
    """Removes a checkpoint's manifest (before its files are rewritten)."""
    path = manifest_path(folder, stem)
    if os.path.exists(path):
        os.remove(path)
        fsync_dir(folder)


def write_manifest(folder: str, stem: str, names: Iterable[str], **extra: Any) -> None:
    """Seals checkpoint ``stem``: a manifest with the size and SHA-256 of each file in
    ``names`` (relative to ``folder``), written atomically after them."""
    files = {}
    for name in names:
        path = os.path.join(folder, name)
        files[name] = {"size": os.path.getsize(path), "sha256": sha256(path)}
    write_json(manifest_path(folder, stem),
               dict(format=MANIFEST_FORMAT, checkpoint=stem, files=files, **extra), indent=1)


def verify(folder: str, stem: str) -> Optional[str]:
    """None if checkpoint ``stem`` is complete, else the reason it is not (a sentence naming
    the file)."""
    mpath = manifest_path(folder, stem)
    if not os.path.exists(mpath):
        return "no %s (its writing did not finish)" % os.path.basename(mpath)
    try:
        with open(mpath) as f:
            manifest = json.load(f)
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return "%s is unreadable (%s)" % (os.path.basename(mpath), describe_error(e))
    for name, want in sorted(files.items()):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            return "%s is missing" % name
        size = os.path.getsize(path)
        if size != want["size"]:
            return "%s has %d bytes, its manifest says %d (truncated or replaced)" % (
                name, size, want["size"])
        if sha256(path) != want["sha256"]:
            return "%s does not match its manifest's SHA-256 (corrupted or replaced)" % name
    return None


_EPOCH = re.compile(r"^epoch_(\d+)\.")


def checkpoint_stems(folder: str) -> List[str]:
    """The ``epoch_NNNN`` stems that have any file in ``folder``, newest first."""
    if not os.path.isdir(folder):
        return []
    stems = {m.group(0)[:-1] for m in map(_EPOCH.match, os.listdir(folder)) if m}
    return sorted(stems, key=lambda s: int(s.split("_")[1]), reverse=True)


def newest_complete(folder: str) -> Tuple[Optional[str], List[Tuple[str, str]]]:
    """(stem, skipped): the newest complete ``epoch_*`` checkpoint in ``folder`` (None if
    none) and [(stem, reason)] for each newer one that is not complete."""
    skipped = []
    for stem in checkpoint_stems(folder):
        reason = verify(folder, stem)
        if reason is None:
            return stem, skipped
        skipped.append((stem, reason))
    return None, skipped
