"""Helpers shared by the tests (oracle adapters, graph builders). Never imported by nnef_tvm."""
