"""Global configuration: `theanine.config`, set from THEANINE_FLAGS or by attribute."""

from __future__ import annotations

import os

MODES = ("py", "numba", "cuda", "cuda-emulator", "FAST_RUN", "FAST_COMPILE", "DebugMode", "NanGuardMode")
FLOAT_DTYPES = ("float16", "float32", "float64")

# name -> (default, allowed values or None for free text, help)
_FLAGS: dict[str, tuple[object, tuple | None, str]] = {
    "floatX": ("float32", FLOAT_DTYPES, "dtype of T.matrix() and of Python floats"),
    "mode": ("numba", MODES, "default compilation mode of theanine.function"),
    "device": ("cpu", None, "cpu, cuda or cuda0 ..."),
    "optimizer": ("fast_run", ("fast_run", "fast_compile", "None", "o1", "o2", "o3", "o4", "merge"), "rewrite set"),
    "optimizer_excluding": ("", None, "colon-separated rewrite names to skip"),
    "optimizer_including": ("", None, "colon-separated rewrite names to add"),
    "compute_test_value": ("off", ("off", "ignore", "warn", "raise", "pdb"), "accepted for compatibility"),
    "exception_verbosity": ("low", ("low", "high"), "accepted for compatibility"),
    "on_unused_input": ("raise", ("raise", "warn", "ignore"), "default of function(on_unused_input=)"),
    "warn_float64": ("ignore", ("ignore", "warn", "raise", "pdb"), "accepted for compatibility"),
    "cast_policy": ("custom", ("custom", "numpy+floatX"), "accepted for compatibility"),
    "allow_gc": (True, (True, False), "accepted for compatibility"),
    "linker": ("auto", None, "accepted for compatibility"),
    "openmp": (False, (True, False), "accepted for compatibility"),
    "profile": (False, (True, False), "profile every function"),
    "traceback__limit": (3, None, "frames kept in a node's creation trace"),
    "cache_dir": ("", None, "compile cache directory (THEANINE_CACHE overrides)"),
    "numba__scan_loop": (True, (True, False), "mode numba compiles a whole scan into one loop"),
    "numba__keep_freed_memory": (True, (True, False), "glibc keeps freed blocks for the next call"),
    "blas__library": ("auto", ("auto", "openblas", "mkl"), "BLAS of mode numba's products: auto is MKL when installed"),
    "print_active_device": (False, (True, False), "accepted for compatibility"),
}


def _parse_value(name: str, text: object) -> object:
    default, allowed, _ = _FLAGS[name]
    value = text
    if isinstance(default, bool) and isinstance(text, str):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            value = True
        elif lowered in ("0", "false", "no", "off"):
            value = False
        else:
            raise ValueError(f"config flag {name!r} expects True or False, got {text!r}")
    elif isinstance(default, int) and not isinstance(default, bool) and isinstance(text, str):
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"config flag {name!r} expects an integer, got {text!r}") from None
    if name == "optimizer" and value is None:
        value = "None"
    if allowed is not None and value not in allowed:
        choices = ", ".join(str(a) for a in allowed)
        raise ValueError(f"config flag {name!r} expects one of {choices}; got {value!r}")
    return value


class Config:
    """Theano-style flags: `config.floatX`, `config.mode`, ...; unknown names raise."""

    def __init__(self, flags: str = "") -> None:
        object.__setattr__(self, "_values", {k: v[0] for k, v in _FLAGS.items()})
        if flags:
            self.update_from_string(flags, source="THEANINE_FLAGS")

    def update_from_string(self, flags: str, source: str = "flags") -> None:
        """Apply `name=value,name=value` (the THEANINE_FLAGS syntax)."""
        for item in flags.split(","):
            item = item.strip()
            if not item:
                continue
            if "=" not in item:
                raise ValueError(f"{source}: expected name=value, got {item!r}")
            name, value = (part.strip() for part in item.split("=", 1))
            name = name.replace(".", "__")
            if name not in _FLAGS:
                raise ValueError(f"{source}: unknown flag {name!r}; known flags: {', '.join(sorted(_FLAGS))}")
            self._values[name] = _parse_value(name, value)

    def __getattr__(self, name: str) -> object:
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(f"theanine.config has no flag {name!r}; known flags: {', '.join(sorted(values))}")

    def __setattr__(self, name: str, value: object) -> None:
        if name not in _FLAGS:
            raise AttributeError(f"theanine.config has no flag {name!r}; known flags: {', '.join(sorted(_FLAGS))}")
        self._values[name] = _parse_value(name, value)

    def change_flags(self, **changes: object) -> "_ChangeFlags":
        """Context manager that sets flags and restores them on exit."""
        return _ChangeFlags(self, changes)

    def __repr__(self) -> str:
        return "\n".join(f"{k} = {v!r}" for k, v in sorted(self._values.items()))


class _ChangeFlags:
    def __init__(self, config: Config, changes: dict) -> None:
        self.config, self.changes, self.saved = config, changes, {}

    def __enter__(self) -> Config:
        for name, value in self.changes.items():
            self.saved[name] = getattr(self.config, name)
            setattr(self.config, name, value)
        return self.config

    def __exit__(self, *exc: object) -> None:
        for name, value in self.saved.items():
            setattr(self.config, name, value)


config = Config(os.environ.get("THEANINE_FLAGS", ""))
