"""Train a denoising autoencoder on Fashion-MNIST and draw its reconstructions.

Each training image is corrupted by masking noise (a fraction of its pixels set to zero, drawn
from `RandomStreams` inside the compiled graph, so every call draws a fresh mask), encoded to a
small code and decoded back; the loss is the binary cross-entropy with the clean image. The final
figure is the mean squared reconstruction error on clean test images. A PNG of test images, their
corrupted versions and the reconstructions is written when matplotlib is installed.
Usage: python examples/autoencoder.py [--epochs N] [--mode py] [--data DIR] [--code 64]
[--corruption 0.3] [--output reconstructions.png] [--train-size N]
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import theanine
import theanine.layers as lasagne
import theanine.tensor as T
from theanine.layers import DenseLayer, InputLayer, get_all_params, get_output
from theanine.layers.training import evaluate, fit
from theanine.tensor.shared_randomstreams import RandomStreams

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # examples/common.py
from common import load, parse_args  # noqa: E402


def build_network(hidden: int = 256, code: int = 64):
    """784 -> hidden -> code -> hidden -> 784, ReLU inside and a sigmoid on the pixels."""
    network = InputLayer((None, 784), name="pixels")
    for k, size in enumerate((hidden, code, hidden)):
        network = DenseLayer(network, size, nonlinearity=lasagne.nonlinearities.rectify,
                             name=f"dense{k + 1}")
    return DenseLayer(network, 784, nonlinearity=lasagne.nonlinearities.sigmoid, name="pixels_out")


def corrupt(x, corruption: float, seed: int):
    """x with each pixel set to zero with probability `corruption` (masking noise)."""
    streams = RandomStreams(seed)
    keep = streams.binomial(x.shape, n=1, p=1.0 - corruption, dtype=x.dtype)
    return x * keep


def compile_functions(network, corruption: float, learning_rate: float, seed: int, mode=None):
    """(train, test, noisy, reconstruct): train(x) -> [loss, squared error] on corrupted input with
    Adam updates; test(x) the same on clean input; noisy(x) a corrupted copy; reconstruct(x)."""
    (l_in,) = [l for l in lasagne.get_all_layers(network) if isinstance(l, InputLayer)]
    x = l_in.input_var
    noisy = corrupt(x, corruption, seed)
    reconstruction = get_output(network, noisy)
    clipped = T.clip(reconstruction, 1e-7, 1 - 1e-7)  # keeps log() finite for saturated pixels
    loss = lasagne.objectives.binary_crossentropy(clipped, x).mean()
    error = lasagne.objectives.squared_error(reconstruction, x).mean()
    params = get_all_params(network, trainable=True)
    updates = lasagne.updates.adam(loss, params, learning_rate=learning_rate)
    train = theanine.function([x], [loss, error], updates=updates, mode=mode, name="train")
    clean = get_output(network)
    clean_loss = lasagne.objectives.binary_crossentropy(T.clip(clean, 1e-7, 1 - 1e-7), x).mean()
    clean_error = lasagne.objectives.squared_error(clean, x).mean()
    test = theanine.function([x], [clean_loss, clean_error], mode=mode, name="test")
    make_noisy = theanine.function([x], noisy, mode=mode, name="noisy")
    reconstruct = theanine.function([x], clean, mode=mode, name="reconstruct")
    return train, test, make_noisy, reconstruct


def save_reconstructions(path: str, images, noisy, denoised, reconstructed) -> None:
    """A PNG with rows: test images, corrupted, reconstructed from corrupted and from clean."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no PNG of reconstructions written (wanted {path}); "
              "pip install matplotlib to get it")
        return
    rows = [("original", images), ("corrupted", noisy), ("from corrupted", denoised),
            ("from original", reconstructed)]
    count = len(images)
    size = (1.2 * count, 1.3 * len(rows))
    fig, axes = plt.subplots(len(rows), count, figsize=size, squeeze=False)
    for r, (label, pictures) in enumerate(rows):
        for c in range(count):
            axes[r][c].imshow(pictures[c].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
        axes[r][0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> float:
    parser = parse_args(argv, __doc__.splitlines()[0], batch_size=128, learning_rate=2e-3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--code", type=int, default=64)
    parser.add_argument("--corruption", type=float, default=0.3,
                        help="fraction of pixels zeroed in each training image")
    parser.add_argument("--output", default="reconstructions.png", help="the PNG to write")
    args = parser.parse_args(argv)
    np.random.seed(args.seed)  # the layers draw their initial weights from it
    (x_train, _), (x_test, _) = load(args, flatten=True)
    start = time.perf_counter()
    network = build_network(args.hidden, args.code)
    train, test, make_noisy, reconstruct = compile_functions(
        network, args.corruption, args.lr, args.seed, args.mode)
    print(f"compiled a {lasagne.count_params(network)}-parameter denoising autoencoder "
          f"(784-{args.hidden}-{args.code}-{args.hidden}-784, corruption {args.corruption}) "
          f"in mode "
          f"{args.mode or theanine.config.mode} ({time.perf_counter() - start:.2f} s)")
    fit(train, x_train, epochs=args.epochs, batch_size=args.batch_size, val_fn=test,
        validation_data=(x_test, None), metric_names=("loss", "squared_error"), seed=args.seed)
    error = evaluate(test, x_test, None, 500, ("loss", "squared_error"))["squared_error"]
    sample = x_test[:10]
    noisy = make_noisy(sample)
    save_reconstructions(args.output, sample, noisy, reconstruct(noisy), reconstruct(sample))
    print(f"final reconstruction error {error:.4f} (mean squared error per pixel on clean test "
          f"images; {time.perf_counter() - start:.1f} s in all)")
    return error


if __name__ == "__main__":
    main()
