"""Datasets: Pascal VOC read/write/check, import of other layouts, procedural scenes.

Modules here import without TensorFlow (only numpy, Pillow and defusedxml); the tf.data input
pipeline lives in :mod:`ppe.data.tfdata`. Boxes in code are ``[xmin, ymin, xmax, ymax]``
normalised to [0, 1], float32; XML holds VOC pixel boxes (see :mod:`ppe.data.voc`).
"""
