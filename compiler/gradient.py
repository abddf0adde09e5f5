"""`theanine.gradient`: grad, Lop, Rop, jacobian, hessian, verify_grad and the gradient-shaping helpers."""

from .autodiff import DisconnectedInputError, DisconnectedType, Lop, Rop, grad  # noqa: F401
