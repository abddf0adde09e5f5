"""Losses and metrics (Lasagne's `lasagne.objectives`): elementwise losses plus `aggregate`."""

from __future__ import annotations

import warnings

import numpy as np

from ..graph import nnet
from ..graph import tensor as T
from ..graph.var import Var
from .utils import as_theano_expression

__all__ = [
    "binary_crossentropy", "categorical_crossentropy", "squared_error", "binary_hinge_loss",
    "multiclass_hinge_loss", "hinge", "kl_divergence", "aggregate", "binary_accuracy",
    "categorical_accuracy",
]


def align_targets(predictions: Var, targets: Var) -> tuple[Var, Var]:
    """Give a target vector a broadcastable second axis when the predictions are a single column."""
    predictions, targets = as_theano_expression(predictions), as_theano_expression(targets)
    if predictions.ndim == 2 and predictions.type.shape[1] == 1 and targets.ndim == 1:
        targets = targets.dimshuffle(0, "x")
    return predictions, targets


def binary_crossentropy(predictions: Var, targets: Var) -> Var:
    """-(t * log(p) + (1 - t) * log(1 - p)), elementwise."""
    predictions, targets = align_targets(predictions, targets)
    return nnet.binary_crossentropy(predictions, targets)


def categorical_crossentropy(predictions: Var, targets: Var) -> Var:
    """-sum(t * log(p)) per row; targets are class indices (vector) or distributions (matrix)."""
    predictions, targets = as_theano_expression(predictions), as_theano_expression(targets)
    return nnet.categorical_crossentropy(predictions, targets)


def squared_error(a: Var, b: Var) -> Var:
    """(a - b) ** 2, elementwise."""
    a, b = align_targets(a, b)
    return T.sqr(a - b)


def binary_hinge_loss(
    predictions: Var,
    targets: Var,
    delta: float = 1,
    log_odds: bool | None = None,
    binary: bool = True,
) -> Var:
    """max(0, delta - p * t), with targets in {0, 1} mapped to {-1, 1} when `binary`; predictions
    are log-odds when `log_odds`, probabilities otherwise."""
    if log_odds is None:
        warnings.warn(
            "binary_hinge_loss: pass log_odds=True (the current default: predictions are "
            "log-odds) or log_odds=False (predictions are probabilities) explicitly",
            FutureWarning,
            stacklevel=2,
        )
        log_odds = True
    predictions, targets = as_theano_expression(predictions), as_theano_expression(targets)
    if not log_odds:
        predictions = T.log(predictions / (1 - predictions))
    if binary:
        targets = 2 * targets - 1
    predictions, targets = align_targets(predictions, targets)
    return nnet.relu(delta - predictions * targets)


def _one_hot_like(targets: Var, predictions: Var) -> Var:
    """Integer class targets as a one-hot matrix shaped like the predictions."""
    classes = T.arange(predictions.shape[1]).dimshuffle("x", 0)
    return T.cast(T.eq(targets.dimshuffle(0, "x"), classes), predictions.dtype)


def multiclass_hinge_loss(predictions: Var, targets: Var, delta: float = 1) -> Var:
    """max(0, max over wrong classes of p - p of the right class + delta), per row."""
    predictions, targets = as_theano_expression(predictions), as_theano_expression(targets)
    if targets.ndim == predictions.ndim - 1:
        targets = _one_hot_like(targets, predictions)
    elif targets.ndim != predictions.ndim:
        raise TypeError(
            f"multiclass_hinge_loss: targets must have {predictions.ndim - 1} (class indices) or "
            f"{predictions.ndim} (one-hot) axes for {predictions.ndim}-d predictions, "
            f"got {targets.ndim}"
        )
    correct = T.sum(predictions * targets, axis=1)
    wrong = T.max(T.switch(targets > 0, -np.inf, predictions), axis=1)
    return nnet.relu(wrong - correct + delta)


def hinge(predictions: Var, targets: Var, delta: float = 1) -> Var:
    """Hinge loss: multiclass for a matrix of class scores, binary (log-odds, {0,1} targets) for
    a vector or single column."""
    predictions = as_theano_expression(predictions)
    if predictions.ndim == 2 and predictions.type.shape[1] != 1:
        return multiclass_hinge_loss(predictions, targets, delta)
    return binary_hinge_loss(predictions, targets, delta, log_odds=True)


def kl_divergence(predictions: Var, targets: Var) -> Var:
    """KL(targets || predictions) = sum(t * (log t - log p)) over the last axis (0 log 0 = 0)."""
    predictions, targets = as_theano_expression(predictions), as_theano_expression(targets)
    safe_targets = T.switch(targets > 0, targets, 1)  # log(1) = 0 where t = 0
    return T.sum(targets * (T.log(safe_targets) - T.log(predictions)), axis=-1)


def aggregate(loss: Var, weights: Var | None = None, mode: str = "mean") -> Var:
    """A scalar from an elementwise loss: 'mean', 'sum' or 'normalized_sum' (sum(w*l) / sum(w))."""
    loss = as_theano_expression(loss)
    if weights is not None:
        loss = loss * weights
    if mode == "mean":
        return loss.mean()
    if mode == "sum":
        return loss.sum()
    if mode == "normalized_sum":
        if weights is None:
            raise ValueError("aggregate: mode='normalized_sum' needs weights")
        return loss.sum() / as_theano_expression(weights).sum()
    raise ValueError(f"aggregate: mode must be 'mean', 'sum' or 'normalized_sum', got {mode!r}")


def binary_accuracy(predictions: Var, targets: Var, threshold: float = 0.5) -> Var:
    """1 where (p >= threshold) equals the target, 0 elsewhere."""
    predictions, targets = align_targets(predictions, targets)
    return T.eq(T.ge(predictions, threshold), targets)


def categorical_accuracy(predictions: Var, targets: Var, top_k: int = 1) -> Var:
    """1 where the target class is among the `top_k` highest predictions of its row, else 0."""
    predictions, targets = as_theano_expression(predictions), as_theano_expression(targets)
    if targets.ndim == predictions.ndim:
        targets = T.argmax(targets, axis=-1)
    elif targets.ndim != predictions.ndim - 1:
        raise TypeError(
            f"categorical_accuracy: targets must have {predictions.ndim - 1} (class indices) or "
            f"{predictions.ndim} (one-hot) axes for {predictions.ndim}-d predictions, "
            f"got {targets.ndim}"
        )
    if top_k == 1:
        return T.eq(T.argmax(predictions, axis=-1), targets)
    leading = (slice(None),) * (predictions.ndim - 1)
    top = T.argsort(predictions, axis=-1)[leading + (slice(-top_k, None),)]
    return T.any(T.eq(top, T.shape_padaxis(targets, axis=-1)), axis=-1)
