"""Training: the fit loop, the distribution strategy and the MLflow tracking.

See :mod:`ppe.train.fit`, :mod:`ppe.train.distribution` and :mod:`ppe.train.tracking`.
"""

from ppe.train.distribution import select_strategy, worker_role
from ppe.train.fit import TrainResult, train

__all__ = ["TrainResult", "select_strategy", "train", "worker_role"]
