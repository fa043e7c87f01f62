"""WGSL kernel sources (plain .wgsl files), loaded with importlib.resources by devices/gpu."""
