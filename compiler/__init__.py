"""theanine.compiler: function(), autodiff, rewrites, and the pass pipeline."""
