"""Typed configuration: hardware systems, model presets and run parameters, loaded from YAML."""

from simulator.config.loading import load_yaml_file
from simulator.config.model import ModelSpec, list_presets, load_model
from simulator.config.system import (
    GPUSpec,
    HostSpec,
    LinkSpec,
    NDPSpec,
    SystemSpec,
    list_hwconfigs,
    load_system,
)

__all__ = [
    "GPUSpec", "HostSpec", "LinkSpec", "ModelSpec", "NDPSpec", "SystemSpec",
    "list_hwconfigs", "list_presets", "load_model", "load_system", "load_yaml_file",
]
