"""Evaluation: PASCAL VOC mAP and the Cartucho/mAP text-file interchange.

``ppe evaluate`` (detections from a model) lives in :mod:`ppe.evaluate.detect`; the metric itself
(:mod:`ppe.evaluate.voc_map`) and the file format (:mod:`ppe.evaluate.cartucho`) need only NumPy.
"""
