"""The edge-side modules must import and work with TensorFlow (and Keras) unimportable."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_decode_preprocess_and_manifest_reader_do_not_need_tensorflow() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow"] = None  # any import of it now raises ImportError
        sys.modules["keras"] = None
        import numpy as np
        import ppe.model
        import ppe.cli.model
        from ppe.model.bundle import read_model_json
        from ppe.model.decode import detect
        from ppe.model.preprocess import letterbox
        from ppe.model.spec import YoloSpec
        spec = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=64)
        image, transform = letterbox(np.zeros((30, 40, 3), np.uint8), 64)
        outputs = [np.zeros((1, *shape), np.float32) for shape in spec.output_shapes]
        results = detect(outputs, spec, score_threshold=0.2)
        assert len(results[0]) > 0, results
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "keras"})
        assert all(sys.modules[m] is None for m in heavy), heavy
        print("ok")
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
