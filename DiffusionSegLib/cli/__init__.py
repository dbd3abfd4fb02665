"""The ``diffusionseg`` command."""
