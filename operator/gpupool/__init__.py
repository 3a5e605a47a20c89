"""gpupool-operator: declarative Nova host-aggregate pools for GPU clouds."""

__version__ = "0.2.0"
