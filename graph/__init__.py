"""theanine.graph: types, variables, every Op (type inference, numpy reference, gradient), printing."""
