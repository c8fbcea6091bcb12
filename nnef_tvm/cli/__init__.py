"""Command-line tools: thin layers over the Python API."""
