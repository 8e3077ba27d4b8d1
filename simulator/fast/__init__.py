"""The fast timer: the placement table and the run contract of the DES, timed by a compiled kernel (numba)."""
