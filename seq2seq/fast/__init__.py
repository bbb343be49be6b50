"""The speed layer: hand-written CPU kernels that compute the reference model's equations.

``seq2seq/model/`` is the definition; this package only makes it faster, and
``model.kernels=reference`` trains without it. :mod:`seq2seq.fast.kernels` decides where each
kernel stands in for a reference module; the tests hold each to its reference.
"""
