"""Hard-hat (PPE) detection: YOLOv3 training, evaluation and the IoT Edge module."""

__version__ = "0.1.0"
