"""stub"""
LOWERINGS = {}
NUMPY_STEPS = {}
