"""The on-disk, content-addressed cache of generated numba source: `<cache>/k_<sha16>.py`.

Each file opens with a header holding the sha256 of the source below it. A file is written once,
atomically (a temporary file hard-linked into place, so concurrent writers never clobber a reader's
file or its modification time, which numba's own cache index is keyed on). A file whose header does
not match its body, or that fails to import, is removed, written again, and a warning says so.
The functions inside use `@numba.njit(cache=True)`, so numba keeps their machine code beside them
(`<cache>/__pycache__`) and a second process compiles nothing it compiled before.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import warnings
from types import ModuleType

_HEADER = "# theanine generated kernel; sha256 of the source below: "
_modules: dict[str, ModuleType] = {}  # sha16 -> module loaded by this process


_fallback: list[str] = []  # a private temporary directory, when the configured one cannot be made


def cache_dir() -> str:
    """The cache directory ($THEANINE_CACHE, config.cache_dir or ~/.cache/theanine), created private
    (0700); when it cannot be created (a read-only home), a temporary one, with a warning."""
    from ...graph.config import config

    default = os.path.join(os.path.expanduser("~"), ".cache", "theanine")
    path = os.environ.get("THEANINE_CACHE") or config.cache_dir or default
    if os.path.isdir(path):
        return path
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)  # makedirs' mode is filtered by the umask
        return path
    except OSError as error:
        if not _fallback:
            import warnings

            _fallback.append(tempfile.mkdtemp(prefix="theanine-cache-"))
            warnings.warn(
                f"theanine: cannot create the kernel cache {path} ({error}); compiling into "
                f"{_fallback[0]} for this process only. Set THEANINE_CACHE to a writable directory.",
                stacklevel=2,
            )
        return _fallback[0]


def source_hash(source: str) -> str:
    """The full sha256 hex digest of a source text."""
    return hashlib.sha256(source.encode()).hexdigest()


def _verified(path: str, digest: str) -> bool:
    """True when the file at `path` holds exactly the source with this digest."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError):
        return False
    header, _, body = text.partition("\n")
    return header == _HEADER + digest and source_hash(body) == digest


def _write_once(path: str, text: str, replace: bool) -> None:
    """Write `text` to `path` atomically; without `replace`, an existing file is left alone."""
    directory = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".py")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o600)
        if replace:
            os.replace(temporary, path)
            return
        try:
            os.link(temporary, path)  # atomic create-if-absent: the first writer wins
        except FileExistsError:
            pass
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def load_source(source: str) -> ModuleType:
    """Import the module holding `source` from the cache, writing (or repairing) its file first."""
    digest = source_hash(source)
    key = digest[:16]
    module = _modules.get(key)
    if module is not None:
        return module
    directory = cache_dir()
    path = os.path.join(directory, f"k_{key}.py")
    text = _HEADER + digest + "\n" + source
    if not os.path.exists(path):
        _write_once(path, text, replace=False)
    if not _verified(path, digest):
        warnings.warn(
            f"theanine: the cached kernel {path} was corrupted (its content does not match its "
            "hash); it was removed and is being rebuilt",
            RuntimeWarning,
            stacklevel=3,
        )
        _remove(path)
        _write_once(path, text, replace=True)
    try:
        module = _import(path, key)
    except SyntaxError as error:  # a hash collision or a bad write we could not see: rebuild once
        warnings.warn(
            f"theanine: the cached kernel {path} did not import ({error}); it is being rebuilt",
            RuntimeWarning,
            stacklevel=3,
        )
        _remove(path)
        _write_once(path, text, replace=True)
        module = _import(path, key)
    _modules[key] = module
    return module


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _import(path: str, key: str) -> ModuleType:
    name = f"theanine_kernels.k_{key}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # numba's cache locator and pickling find the module by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def loaded_modules() -> dict[str, ModuleType]:
    """The generated modules this process has loaded, by sha16 (for tests and statistics)."""
    return dict(_modules)


def compile_counts() -> dict[str, int]:
    """Cache hits and misses (compiles) over every numba function of this backend loaded so far."""
    from numba.core.registry import CPUDispatcher

    hits = misses = 0
    for name, module in list(sys.modules.items()):
        if not name.startswith(("theanine_kernels.", "theanine.kernels.numba.")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, CPUDispatcher):
                hits += sum(value.stats.cache_hits.values())
                misses += sum(value.stats.cache_misses.values())
    return {"hits": hits, "misses": misses}
