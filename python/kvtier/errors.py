"""Status codes of libkvtier mapped to exceptions.

Every kvt_ function returns 0, a negative errno, or one of the library's own codes
(KVT_E*, in [-30906, -30900]). A non-zero status becomes an instance of the class
:func:`error_class` gives for it; every class derives from :class:`KvtierError`, which
carries ``status`` (the C value), ``func`` (the C function) and the library's description
(``kvt_strerror``). Classes also derive from the closest built-in exception
(``ValueError``, ``IndexError``, ``MemoryError``, ``LookupError``) so generic handlers work.
"""

from __future__ import annotations

import errno
from typing import Dict, Optional, Type

__all__ = [
    "KVT_OK", "KVT_EBADLAYOUT", "KVT_ESIZE", "KVT_EMODE", "KVT_ENAME", "KVT_ELEASES",
    "KVT_ECORRUPT", "KVT_ECATALOG", "DeviceUnavailableError", "CorruptBlockError", "CatalogError",
    "TierIOError",
    "KvtierError", "InvalidArgumentError", "OutOfMemoryError", "NoSpaceError", "BusyError",
    "RangeError", "NotFoundError", "NoDataError", "BadLayoutError", "SizeError", "ModeError",
    "InvalidNameError", "LeasesOpenError", "ClosedError", "FeatureUnavailableError",
    "error_class", "check", "strerror",
]

KVT_OK = 0
KVT_EBADLAYOUT = -30900
KVT_ESIZE = -30901
KVT_EMODE = -30902
KVT_ENAME = -30903
KVT_ELEASES = -30904
KVT_ECORRUPT = -30905
KVT_ECATALOG = -30906


def strerror(status: int) -> str:
    """``kvt_strerror(status)``: the library's description of any status."""
    from . import _lib

    return _lib.lib().kvt_strerror(int(status)).decode("utf-8", "replace")


class KvtierError(Exception):
    """A kvt_ function failed. ``status`` is the C return value (negative)."""

    status: int
    func: str

    def __init__(self, status: int, func: str = "", detail: str = ""):
        self.status = int(status)
        self.func = func
        try:
            desc = strerror(self.status)
        except OSError:  # library not loadable: still say something useful
            desc = f"status {self.status}"
        self.description = desc
        msg = f"{func}: {desc} (status {self.status})" if func else f"{desc} (status {self.status})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)

    def __reduce__(self):  # picklable across processes
        return (self.__class__, (self.status, self.func))


class InvalidArgumentError(KvtierError, ValueError):
    """-EINVAL: a NULL or out-of-domain argument."""


class OutOfMemoryError(KvtierError, MemoryError):
    """-ENOMEM: an allocation or the DRAM arena's mapping failed."""


class NoSpaceError(KvtierError):
    """-ENOSPC: the tenant has nothing left to evict, or its quota is below one block."""


class BusyError(KvtierError):
    """-EBUSY: a lease pins, or a put is storing, a block concerned."""


class RangeError(KvtierError, IndexError):
    """-ERANGE: a block index beyond the lease."""


class NotFoundError(KvtierError, LookupError):
    """-ENOENT: the prefix is not cached in full (kvt_remove)."""


class NoDataError(KvtierError):
    """-ENODATA: kvt_put needed a block's bytes that were not given."""


class BadLayoutError(KvtierError, ValueError):
    """KVT_EBADLAYOUT: invalid layout, or the namespace exists with another one."""


class SizeError(KvtierError, ValueError):
    """KVT_ESIZE: a buffer's size does not match the namespace's layout."""


class ModeError(KvtierError, TypeError):
    """KVT_EMODE: a token call on a key namespace or a key call on a token namespace."""


class InvalidNameError(KvtierError, ValueError):
    """KVT_ENAME: a namespace or tenant name is empty or longer than 255 bytes."""


class LeasesOpenError(KvtierError):
    """KVT_ELEASES: the engine still has open leases (close)."""


class DeviceUnavailableError(KvtierError):
    """-ENODEV: the HBM tier / GPU functions without a usable GPU, without a CUDA build of
    libkvtier, or on an engine opened without ``hbm_bytes``."""


class CorruptBlockError(KvtierError):
    """KVT_ECORRUPT: a block read from nvme/disk failed verification; it was not served."""


class CatalogError(KvtierError):
    """KVT_ECATALOG: the persistent catalog (RocksDB) failed (see DIR/catalog/LOG)."""


class TierIOError(KvtierError, OSError):
    """-EIO: a read or write of a persistent tier failed."""

    def __str__(self) -> str:  # OSError's own __str__ would print the args tuple
        return self.args[0] if self.args else ""


class ClosedError(KvtierError):
    """The Python object's cache was closed or its lease released (no C call was made)."""

    def __init__(self, what: str):
        self.status = -errno.EBADF
        self.func = ""
        self.description = what
        Exception.__init__(self, what)

    def __reduce__(self):
        return (self.__class__, (self.description,))


class FeatureUnavailableError(KvtierError, NotImplementedError):
    """The loaded libkvtier does not export the function this needs (an older library)."""

    def __init__(self, name: str):
        self.status = -errno.ENOSYS
        self.func = name
        self.description = f"{name} is not in the loaded libkvtier"
        Exception.__init__(self, self.description)

    def __reduce__(self):
        return (self.__class__, (self.func,))


_BY_STATUS: Dict[int, Type[KvtierError]] = {
    -errno.EINVAL: InvalidArgumentError,
    -errno.ENOMEM: OutOfMemoryError,
    -errno.ENOSPC: NoSpaceError,
    -errno.EBUSY: BusyError,
    -errno.ERANGE: RangeError,
    -errno.ENOENT: NotFoundError,
    -errno.ENODATA: NoDataError,
    KVT_EBADLAYOUT: BadLayoutError,
    KVT_ESIZE: SizeError,
    KVT_EMODE: ModeError,
    KVT_ENAME: InvalidNameError,
    KVT_ELEASES: LeasesOpenError,
    -errno.ENODEV: DeviceUnavailableError,
    -errno.EIO: TierIOError,
    KVT_ECORRUPT: CorruptBlockError,
    KVT_ECATALOG: CatalogError,
}


def error_class(status: int) -> Type[KvtierError]:
    """The exception class for a non-zero status (KvtierError for codes without their own)."""
    return _BY_STATUS.get(int(status), KvtierError)


def check(status: int, func: str, detail: Optional[str] = None) -> int:
    """Return 0 for status 0; raise the mapped exception otherwise."""
    if status == 0:
        return 0
    raise error_class(status)(status, func, detail or "")
