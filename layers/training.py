"""Training helpers: a fit loop with minibatches, validation, early stopping and a progress bar;
parameters saved and loaded as .npz, atomically."""

from __future__ import annotations

import math
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .helper import get_all_params


@dataclass
class History:
    """Per-epoch metrics (`history['loss']`, `history['val_accuracy']` ...), the best epoch and timings."""

    metrics: dict = field(default_factory=dict)
    best_epoch: int | None = None
    stopped_early: bool = False
    seconds: list = field(default_factory=list)

    def __getitem__(self, name: str) -> list:
        return self.metrics[name]

    def record(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, []).append(float(value))

    def plot(self, path: str | os.PathLike, title: str = "learning curves") -> Path:
        """Write a PNG of every metric against the epoch (needs matplotlib: the `viz` extra)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install 'theanine[viz]'") from None
        names = sorted({name.removeprefix("val_") for name in self.metrics})
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
        for ax, name in zip(axes[0], names):
            for key in (name, f"val_{name}"):
                if key in self.metrics:
                    values = self.metrics[key]
                    ax.plot(range(1, len(values) + 1), values, marker="o", label=key)
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.legend()
        fig.suptitle(title)
        fig.tight_layout()
        path = Path(path)
        _atomic_write(path, lambda f: fig.savefig(f, format="png"))
        plt.close(fig)
        return path


def _as_outputs(result, names: Sequence[str]) -> dict:
    values = result if isinstance(result, (list, tuple)) else [result]
    if len(values) != len(names):
        raise ValueError(f"the function returned {len(values)} values but metric_names has {len(names)}: {list(names)}")
    return {name: float(np.mean(v)) for name, v in zip(names, values)}


def _batches(n: int, batch_size: int, order: np.ndarray):
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def fit(train_fn: Callable, x: np.ndarray, y: np.ndarray | None = None, *, epochs: int = 10,
        batch_size: int = 128, val_fn: Callable | None = None, validation_data: tuple | None = None,
        validation_split: float = 0.0, shuffle: bool = True, metric_names: Sequence[str] = ("loss",),
        patience: int | None = None, monitor: str | None = None, restore_best=None,
        learning_rate=None, lr_schedule: Callable[[int], float] | None = None, progress: bool = True,
        seed: int = 0, drop_last: bool = False) -> History:
    """Train with minibatches for `epochs`; returns a History.

    train_fn(x_batch[, y_batch]) returns the metrics named by `metric_names` (loss first); val_fn
    (default: train_fn is not reused) evaluates a held-out split: `validation_data=(xv, yv)` or the last
    `validation_split` fraction of x. `patience` stops after that many epochs without improvement of
    `monitor` (default: 'val_loss' if validating, else 'loss'); `restore_best` (a layer or a list of
    shared variables) gets the best epoch's values back at the end. `learning_rate` (a shared
    variable) is set to `lr_schedule(epoch)` before each epoch.
    """
    from tqdm.auto import tqdm

    if epochs < 1 or batch_size < 1:
        raise ValueError(f"fit: epochs and batch_size must be >= 1, got epochs={epochs}, batch_size={batch_size}")
    if y is not None and len(x) != len(y):
        raise ValueError(f"fit: x has {len(x)} samples but y has {len(y)}")
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split}")
    if validation_data is None and validation_split > 0:
        cut = len(x) - int(round(len(x) * validation_split))
        validation_data = (x[cut:], None if y is None else y[cut:])
        x, y = x[:cut], None if y is None else y[:cut]
    if validation_data is not None and val_fn is None:
        raise ValueError("fit: validation needs val_fn, a compiled function without updates")
    if lr_schedule is not None and learning_rate is None:
        raise ValueError("fit: lr_schedule needs learning_rate, the shared variable it sets")
    monitor = monitor or ("val_loss" if validation_data is not None else metric_names[0])
    params = get_all_params(restore_best) if restore_best is not None and not isinstance(restore_best, list) else restore_best
    rng = np.random.default_rng(seed)
    history = History()
    best, best_values, waited = math.inf, None, 0
    n = len(x)
    for epoch in range(1, epochs + 1):
        tic = time.perf_counter()
        if lr_schedule is not None:
            learning_rate.set_value(np.asarray(lr_schedule(epoch), dtype=learning_rate.dtype))
        order = rng.permutation(n) if shuffle else np.arange(n)
        if drop_last:
            order = order[: n - n % batch_size]
        sums, count = {}, 0
        # tqdm's disable=None: a bar on a terminal, none in a log file (the epoch line still prints)
        bar = tqdm(total=len(order), desc=f"epoch {epoch}/{epochs}", unit="sample",
                   disable=None if progress else True, leave=False, mininterval=0.5)
        for index in _batches(len(order), batch_size, order):
            args = (x[index],) if y is None else (x[index], y[index])
            outputs = _as_outputs(train_fn(*args), metric_names)
            for name, value in outputs.items():
                sums[name] = sums.get(name, 0.0) + value * len(index)
            count += len(index)
            bar.update(len(index))
            bar.set_postfix({k: f"{v / count:.4f}" for k, v in sums.items()})
        bar.close()
        for name, total in sums.items():
            history.record(name, total / max(count, 1))
        if validation_data is not None:
            xv, yv = validation_data
            for name, value in evaluate(val_fn, xv, yv, batch_size, metric_names).items():
                history.record(f"val_{name}", value)
        history.seconds.append(time.perf_counter() - tic)
        if progress:
            shown = ", ".join(f"{k} {v[-1]:.4f}" for k, v in history.metrics.items())
            print(f"epoch {epoch}/{epochs}: {shown} ({history.seconds[-1]:.1f} s)")
        current = history.metrics[monitor][-1] if monitor in history.metrics else math.inf
        better = -current if "acc" in monitor else current
        if better < best:
            best, waited, history.best_epoch = better, 0, epoch
            if params is not None:
                best_values = [p.get_value() for p in params]
        else:
            waited += 1
            if patience is not None and waited >= patience:
                history.stopped_early = True
                break
    if params is not None and best_values is not None:
        for p, v in zip(params, best_values):
            p.set_value(v)
    return history


def evaluate(fn: Callable, x: np.ndarray, y: np.ndarray | None = None, batch_size: int = 512,
             metric_names: Sequence[str] = ("loss",)) -> dict:
    """The sample-weighted mean of fn's metrics over x (and y), in batches."""
    sums, count = {}, 0
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        args = (x[start:stop],) if y is None else (x[start:stop], y[start:stop])
        for name, value in _as_outputs(fn(*args), metric_names).items():
            sums[name] = sums.get(name, 0.0) + value * len(args[0])
        count += len(args[0])
    return {name: total / max(count, 1) for name, total in sums.items()}


def _param_names(params: Sequence) -> list[str]:
    """Unique keys: the parameter's name, prefixed by its position (names repeat across layers)."""
    return [f"{k:03d}:{p.name or 'param'}" for k, p in enumerate(params)]


def _atomic_write(path: Path, write: Callable) -> None:
    """Write to a temporary file beside `path`, then rename it over: a crash mid-write loses nothing."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def save_params(path: str | os.PathLike, layer_or_params) -> Path:
    """Save parameter values as .npz (never pickle), atomically."""
    params = layer_or_params if isinstance(layer_or_params, (list, tuple)) else get_all_params(layer_or_params)
    arrays = {name: p.get_value() for name, p in zip(_param_names(params), params)}
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz")
    _atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def load_params(path: str | os.PathLike, layer_or_params) -> None:
    """Load values saved by save_params; checks names and shapes before changing anything."""
    params = layer_or_params if isinstance(layer_or_params, (list, tuple)) else get_all_params(layer_or_params)
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such parameter file") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npz parameter file ({error}); it is damaged or truncated") from None
    names = _param_names(params)
    if len(stored) != len(params):
        raise ValueError(f"{path} holds {len(stored)} parameters, the model has {len(params)}: {names}")
    for name, param in zip(names, params):
        if name not in stored:
            raise ValueError(f"{path}: no entry {name!r} for parameter {param.name!r}; the file has {sorted(stored)}")
        shape = param.get_value(borrow=True).shape
        if stored[name].shape != shape:
            raise ValueError(
                f"{path}: parameter {name!r} has shape {stored[name].shape} in the file but {shape} in the model"
            )
    for name, param in zip(names, params):
        param.set_value(stored[name].astype(param.dtype, copy=False))
