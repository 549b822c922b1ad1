"""Fixtures for the IoT Edge module tests (shared with the integration tests)."""

from testing.edge_fixtures import edge_models, load_tflite_models, tflite_models

__all__ = ["edge_models", "load_tflite_models", "tflite_models"]
