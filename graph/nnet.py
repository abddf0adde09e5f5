"""`theanine.tensor.nnet`: neural-network functions (sigmoid, softmax, cross-entropies, ...)."""
