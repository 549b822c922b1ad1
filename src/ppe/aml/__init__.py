"""Azure ML side of the platform, built with azure-ai-ml and azure-storage-blob.

Settings from Terraform's outputs, the workspace client, command components and the training
pipeline, environments registered by content, and the dataset upload to the workspace's default
datastore.

Only :mod:`ppe.aml.settings` and :mod:`ppe.cli.aml` are imported by the CLI at start-up;
the other modules import azure-ai-ml and azure-storage-blob (about a second) and are loaded by
the ``ppe aml`` handlers.
"""
