"""theanine.layers: Lasagne-style layers, initializers, objectives and updates."""
