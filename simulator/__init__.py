"""moesim: a discrete-event simulator of Mixture-of-Experts decoding with offloaded low-bit experts,
router-guided low-rank compensation and near-data processing (NDP)."""

__version__ = "0.1.0"
