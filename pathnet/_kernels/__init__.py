"""Numba kernels: ``@njit(cache=True)`` functions only, contiguous arrays and scalars in, arrays out.

Public functions elsewhere validate their inputs and then call these (stumpy's
``stump()`` -> ``_stump`` split). Nothing here converts models or builds masks.
One module per algorithm, e.g. ``walks`` (PHEW's random walks and the
preparation of their per-row cumulative sums and guide tables).
"""
