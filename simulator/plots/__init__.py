"""Figures built from DataFrames (matplotlib, Agg backend)."""
