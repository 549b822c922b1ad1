"""Import azure-ai-ml once with its import-time deprecation warnings silenced.

Its marshmallow schemas warn (RemovedInMarshmallow4Warning) while their classes are defined; that
is not ours, and the suite turns warnings into errors. Once imported, nothing warns again.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import azure.ai.ml
    import azure.ai.ml.entities  # noqa: F401
