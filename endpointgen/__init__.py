"""endpointgen: a YAML spec in, a readable Modal app module out."""

__version__ = "0.2.0"
