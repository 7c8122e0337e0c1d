"""Fetching a data set: checksummed downloads, safe unpacking, atomic installation."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from pathnet.data.errors import PREFIX, DatasetError
from pathnet.data.registry import CHECKSUMS, FOLDERS, MIRRORS, canonical_name, user_cache_dir

__all__ = ["download", "download_base", "fetch_dataset"]

_log = logging.getLogger(__name__)


def download_base(root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("PATHNET_DATA", "")
    return Path(env).expanduser() if env else user_cache_dir()


def _url(name: str, filename: str, mirror: str | None) -> str:
    base = mirror or os.environ.get("PATHNET_DATA_MIRROR") or MIRRORS[name]
    base = base.replace("{name}", name)
    url = base.rstrip("/") + "/" + urllib.parse.quote(filename)
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"{PREFIX}: mirror must be an http, https or file address, got {base!r}")
    return url


def _fetch(url: str, dest: Path, md5: str, timeout: float = 60.0) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("localhost", "127.0.0.1", "::1"):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    else:
        opener = urllib.request.build_opener()
    request = urllib.request.Request(url, headers={"User-Agent": "pathnet"})
    digest = hashlib.md5(usedforsecurity=False)
    _log.info("%s: downloading %s", PREFIX, url)
    try:
        with opener.open(request, timeout=timeout) as response, dest.open("wb") as fh:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                fh.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DatasetError(f"{PREFIX}: download of {url} failed: {exc}") from exc
    except Exception as exc:  # http.client.HTTPException and the like
        raise DatasetError(f"{PREFIX}: download of {url} failed: {exc!r}") from exc
    got = digest.hexdigest()
    if got != md5.lower():
        raise DatasetError(
            f"{PREFIX}: checksum mismatch for {url}: expected md5 {md5.lower()}, got {got}; "
            f"the download was discarded"
        )


def _check_member(name: str, archive: Path) -> None:
    pure = PurePosixPath(name.replace("\\", "/"))
    if (
        not name
        or pure.is_absolute()
        or ".." in pure.parts
        or (pure.parts and ":" in pure.parts[0])
    ):
        raise DatasetError(f"{PREFIX}: {archive}: refusing unsafe archive member {name!r}")


def _extract(archive: Path, dest: Path) -> None:
    if archive.name.endswith(".zip"):
        try:
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:
                    _check_member(info.filename, archive)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise DatasetError(
                            f"{PREFIX}: {archive}: refusing symbolic link {info.filename!r}"
                        )
                zf.extractall(dest, members=infos)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DatasetError(f"{PREFIX}: {archive}: cannot extract: {exc}") from exc
        return
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            for member in members:
                _check_member(member.name, archive)
                if not (member.isfile() or member.isdir()):
                    raise DatasetError(
                        f"{PREFIX}: {archive}: refusing archive member {member.name!r} that "
                        f"is not a regular file or folder"
                    )
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.10.12
                tf.extractall(dest, members=members)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{PREFIX}: {archive}: cannot extract: {exc}") from exc


def _makedirs(path: Path) -> list[Path]:
    """``mkdir -p`` returning the folders created, deepest last."""
    created = []
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for p in reversed(missing):
        try:
            p.mkdir()
            created.append(p)
        except FileExistsError:
            pass
    return created


def download(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    mirror: str | None = None,
    checksums: Mapping[str, str] | None = None,
) -> Path:
    """Download a data set and install it under the download folder.

    Every file is streamed into a temporary folder inside the destination, checked
    against its MD5 sum, and only then moved into place with :func:`os.replace`;
    archives are unpacked (refusing absolute paths, ``..`` and links) into the temporary
    folder and renamed into place. On any failure the temporary folder, and any folder
    this call created, are removed.

    Parameters
    ----------
    name : str
        Data-set name or alias.
    root : str or os.PathLike, optional
        Destination base; default ``PATHNET_DATA``, else the user cache.
    mirror, checksums
        As for :func:`load_dataset`.

    Returns
    -------
    pathlib.Path
        The installed data-set folder, ``<base>/<folder>`` (e.g. ``<base>/mnist``).

    Raises
    ------
    DatasetError
        A download failed, or a file failed its checksum.

    Examples
    --------
    From a local mirror (a ``file://`` address), with the checksums of its files:

    >>> import gzip, hashlib, tempfile, pathlib
    >>> mirror = pathlib.Path(tempfile.mkdtemp())
    >>> sums = {}
    >>> for name in CHECKSUMS["mnist"]:
    ...     data = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 0]))  # an empty IDX file
    ...     _ = (mirror / name).write_bytes(data)
    ...     sums[name] = hashlib.md5(data).hexdigest()
    >>> dest = pathlib.Path(tempfile.mkdtemp())
    >>> download("mnist", dest, mirror=mirror.as_uri(), checksums=sums) == dest / "mnist"
    True
    >>> sorted(p.name for p in (dest / "mnist").iterdir())[:2]
    ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']
    """
    return fetch_dataset(canonical_name(name), root, mirror, checksums)


def fetch_dataset(
    name: str,
    root: str | os.PathLike[str] | None,
    mirror: str | None,
    checksums: Mapping[str, str] | None,
) -> Path:
    base = download_base(root)
    target = base / FOLDERS[name][0]
    table = dict(CHECKSUMS[name])
    if checksums:
        unknown = set(checksums) - set(table)
        if unknown:
            raise ValueError(
                f"{PREFIX}: checksums names files {sorted(unknown)} that {name!r} does not "
                f"download; expected keys among {sorted(table)}"
            )
        table.update({k: str(v) for k, v in checksums.items()})
    created = _makedirs(base)
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".pathnet-download-", dir=base))
        fetched = tmp / "fetched"
        fetched.mkdir()
        for filename, md5 in table.items():
            _fetch(_url(name, filename, mirror), fetched / filename, md5)
        if name in ("mnist", "fashion-mnist"):
            if target.is_dir():
                for filename in table:
                    os.replace(fetched / filename, target / filename)
            else:
                os.replace(fetched, target)
        else:
            (archive,) = table
            unpacked = tmp / "unpacked"
            _extract(fetched / archive, unpacked)
            new = unpacked / FOLDERS[name][0]
            if not new.is_dir():
                raise DatasetError(
                    f"{PREFIX}: {archive} from {_url(name, archive, mirror)} holds no folder "
                    f"{FOLDERS[name][0]}/"
                )
            previous = tmp / "previous"
            if target.exists():
                os.replace(target, previous)
            try:
                os.replace(new, target)
            except OSError:
                if previous.exists():
                    os.replace(previous, target)
                raise
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp = None
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
