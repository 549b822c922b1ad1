"""Fixtures for the IoT Edge integration tests (shared with the unit tests)."""

from testing.edge_fixtures import edge_models, load_tflite_models, tflite_models

__all__ = ["edge_models", "load_tflite_models", "tflite_models"]
