"""How people and workflow engines drive the pipeline: the `virnucpro` CLI and the Python API."""
