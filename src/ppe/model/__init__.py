"""YOLOv3 detector: model spec, Keras models, Darknet weights, targets, loss, decoding, bundles.

Import the submodules you need; this package module imports nothing heavy, so the IoT Edge
module can use :mod:`ppe.model.decode` and :mod:`ppe.model.preprocess` without TensorFlow.
"""
