"""The pipeline's data step: synthesise or import the dataset into a run, then check it."""

from __future__ import annotations

from pathlib import Path

from ppe.config import Config
from ppe.errors import DataError
from ppe.run.layout import RunLayout


def prepare_data(config: Config, run_dir: Path) -> Path:
    """Synthesise or import the dataset into ``run_dir/data`` (or use a VOC folder in place).

    The data check's verdict is written to ``run_dir/data_check.txt``.

    Returns:
        The Pascal VOC folder the later steps read.

    Raises:
        DataError: the data check found problems.
    """
    from ppe.data.check import check_dataset

    data = config.data
    run = RunLayout(run_dir)
    target = run.port("data")
    if data.source == "synth":
        from ppe.data.synthetic import synthesize

        synthesize(target, data.synth, data.split, config.model.classes)
    elif data.source == "import":
        from ppe.data.importer import import_dataset

        assert data.path is not None  # the config validator guarantees it
        import_dataset(
            data.path / "annotations",
            data.path / "images",
            target,
            classes=config.model.classes,
            class_map=data.class_map,
            split=data.split,
        )
    else:
        assert data.path is not None
        target = data.path
    problems = check_dataset(target, config.model.classes)
    verdict = "\n".join(str(problem) for problem in problems) or "clean"
    run_dir.mkdir(parents=True, exist_ok=True)
    run.data_check.write_text(verdict + "\n", encoding="utf-8")
    if problems:
        raise DataError(
            f"{target}: the data check found {len(problems)} problem(s), see "
            f"{run.data_check}; fix them or run `ppe data check {target}`"
        )
    return target
