"""Placement policies: one small file each; see base.py for the hooks and registry.py for the names."""
