"""``upload_dataset`` against Azurite, the real Blob storage protocol, with azure-storage-blob.

Azurite (npm ``azurite``, installed by ``make setup``) is started on a free loopback port with
a temporary folder. The blob side is real. The data-asset side is not: no Azure ML workspace
exists offline, so ``FakeDataAssets`` stands in for ``MLClient.data`` and records every
registration (it raises ``ResourceNotFoundError`` for unknown versions, as the service does); the
``Data`` entities it receives are real azure-ai-ml objects.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient
from testing.helpers import azurite_blob_service

from ppe.aml.data import DEFAULT_PREFIX, HASH_PROPERTY, asset_version, upload_dataset
from ppe.data.voc import dataset_hash

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.RemovedInMarshmallow4Warning")

DATASTORE = "workspaceblobstore"
NAME = "ppe-hardhat-voc"


@pytest.fixture(scope="module")
def blob_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlobServiceClient]:
    with azurite_blob_service(tmp_path_factory.mktemp("azurite")) as service:
        yield service


@pytest.fixture
def container(blob_service: BlobServiceClient, request: pytest.FixtureRequest) -> ContainerClient:
    name = "azureml-blobstore-" + str(abs(hash(request.node.name)) % 10**8)
    client = blob_service.get_container_client(name)
    client.create_container()
    return client


class FakeDataAssets:
    """Stands in for ``MLClient.data`` (no workspace offline): records registrations."""

    def __init__(self) -> None:
        self.assets: dict[tuple[str, str], Any] = {}
        self.gets: list[tuple[str, str | None]] = []

    def get(self, name: str, version: str | None = None, label: str | None = None) -> Any:
        self.gets.append((name, version))
        if (name, str(version)) not in self.assets:
            raise ResourceNotFoundError(f"data {name}:{version} not found")
        return self.assets[name, str(version)]

    def create_or_update(self, data: Any) -> Any:
        self.assets[data.name, data.version] = data
        return data


class CountingContainer:
    """A real ContainerClient that counts uploads and can fail after N of them."""

    def __init__(self, inner: ContainerClient, fail_after: int | None = None) -> None:
        self.inner = inner
        self.fail_after = fail_after
        self.uploads: list[str] = []

    def upload_blob(self, name: str, data: Any, **kwargs: Any) -> Any:
        if self.fail_after is not None and len(self.uploads) >= self.fail_after:
            raise ConnectionError("simulated network failure")
        self.uploads.append(name)
        return self.inner.upload_blob(name, data, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)


def make_voc(root: Path, images: int = 6) -> Path:
    """A small Pascal VOC folder (bytes differ per file; the content is what counts here)."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    ids = [f"img{index:03d}" for index in range(images)]
    for index, image_id in enumerate(ids):
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>64</width>"
            f"<height>48</height><depth>3</depth></size><object><name>helmet</name>"
            f"<bndbox><xmin>{index + 1}</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax>"
            "</bndbox></object></annotation>"
        )
        (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(bytes([index]) * (3000 + index))
    for split, members in (("train", ids[:4]), ("val", ids[4:5]), ("test", ids[5:])):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(members) + "\n")
    (root / ".DS_Store").write_bytes(b"not part of the dataset")
    return root


def _blobs(container: ContainerClient) -> dict[str, bytes]:
    return {
        blob.name: container.download_blob(blob.name).readall() for blob in container.list_blobs()
    }


def test_upload_registers_a_content_versioned_asset(
    container: ContainerClient, tmp_path: Path
) -> None:
    root = make_voc(tmp_path / "voc")
    assets = FakeDataAssets()
    counting = CountingContainer(container)
    result = upload_dataset(
        root, container=counting, assets=assets, datastore=DATASTORE, name=NAME, workers=4
    )

    full_hash = dataset_hash(root)
    assert result.dataset_hash == full_hash
    assert result.version == full_hash[:16] == asset_version(full_hash)
    assert (result.files, result.uploaded, result.skipped, result.registered) == (15, 15, 0, True)

    prefix = f"{DEFAULT_PREFIX}/{NAME}/{result.version}"
    blobs = _blobs(container)
    local = {
        f"{prefix}/{path.relative_to(root).as_posix()}": path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and not path.name.startswith(".")
    }
    assert {name: data for name, data in blobs.items() if name.startswith(prefix + "/")} == local
    assert f"{prefix}.complete.json" in blobs
    for blob in container.list_blobs(name_starts_with=prefix + "/"):
        assert blob.content_settings.content_md5, f"{blob.name} has no Content-MD5"

    data = assets.assets[NAME, result.version]
    assert data.type == "uri_folder"
    assert data.path == f"azureml://datastores/{DATASTORE}/paths/{prefix}/"
    assert data.properties[HASH_PROPERTY] == full_hash
    assert result.path == data.path


def test_second_upload_of_the_same_data_uploads_nothing(
    container: ContainerClient, tmp_path: Path
) -> None:
    root = make_voc(tmp_path / "voc")
    assets = FakeDataAssets()
    first = upload_dataset(
        root,
        container=CountingContainer(container),
        assets=assets,
        datastore=DATASTORE,
        name=NAME,
    )
    counting = CountingContainer(container)
    # Same content in another folder: same version, nothing to upload.
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    second = upload_dataset(copy, container=counting, assets=assets, datastore=DATASTORE, name=NAME)
    assert counting.uploads == []
    assert (second.version, second.uploaded, second.registered) == (first.version, 0, False)
    assert len(assets.assets) == 1

    # Changed content: a new version.
    (copy / "JPEGImages" / "img000.jpg").write_bytes(b"changed")
    third = upload_dataset(copy, container=counting, assets=assets, datastore=DATASTORE, name=NAME)
    assert third.version != first.version
    assert len(assets.assets) == 2


def test_interrupted_upload_registers_nothing_and_resumes(
    container: ContainerClient, tmp_path: Path
) -> None:
    root = make_voc(tmp_path / "voc")
    assets = FakeDataAssets()
    failing = CountingContainer(container, fail_after=5)
    with pytest.raises(ConnectionError, match="simulated"):
        upload_dataset(
            root, container=failing, assets=assets, datastore=DATASTORE, name=NAME, workers=1
        )
    version = asset_version(dataset_hash(root))
    prefix = f"{DEFAULT_PREFIX}/{NAME}/{version}"
    assert assets.assets == {}, "a half-uploaded dataset must not be registered"
    names = [blob.name for blob in container.list_blobs()]
    assert len(names) == 5
    assert f"{prefix}.complete.json" not in names

    # A corrupted blob from the interrupted run is re-uploaded, not trusted.
    container.upload_blob(names[0], b"truncated", overwrite=True)

    resumed = CountingContainer(container)
    result = upload_dataset(
        root, container=resumed, assets=assets, datastore=DATASTORE, name=NAME, workers=2
    )
    data_uploads = [name for name in resumed.uploads if not name.endswith(".complete.json")]
    assert len(data_uploads) == 15 - 4
    assert names[0] in data_uploads
    assert (result.uploaded, result.skipped, result.registered) == (11, 4, True)
    assert (NAME, version) in assets.assets
    assert f"{prefix}.complete.json" in [blob.name for blob in container.list_blobs()]
    downloaded = container.download_blob(names[0]).readall()
    assert downloaded == (root / names[0].removeprefix(prefix + "/")).read_bytes()


def test_stray_blob_under_the_prefix_is_removed_before_registering(
    container: ContainerClient, tmp_path: Path
) -> None:
    root = make_voc(tmp_path / "voc")
    version = asset_version(dataset_hash(root))
    stray = f"{DEFAULT_PREFIX}/{NAME}/{version}/JPEGImages/stray.jpg"
    container.upload_blob(stray, b"left over", overwrite=True)
    assets = FakeDataAssets()
    upload_dataset(root, container=container, assets=assets, datastore=DATASTORE, name=NAME)
    assert stray not in [blob.name for blob in container.list_blobs()]
    assert (NAME, version) in assets.assets
