"""theanine.function: compile symbolic inputs and outputs into a callable (placeholder)."""


def function(*args, **kwargs):
    raise NotImplementedError


class Function:
    pass


class In:
    pass


class Out:
    pass
