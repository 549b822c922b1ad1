"""Upload a Pascal VOC folder to the workspace's default datastore and register a data asset.

The data asset is a ``uri_folder`` whose **version is the dataset's content hash**
(:func:`ppe.data.voc.dataset_hash`), cut to its first :data:`VERSION_LENGTH` hex characters:
Azure ML limits data asset versions to 30 characters, so the full 64-character sha256 does not
fit. 16 hex characters (64 bits) make an accidental collision between two datasets of one name
negligible, and the full hash is kept in the asset's ``dataset_hash`` property and checked
before an existing version is reused.

How an upload stays whole:

1. If the workspace already has the asset at that version (with the same full hash), nothing is
   uploaded.
2. Files go under a content-addressed prefix, ``<prefix>/<name>/<version>/``. A blob whose
   stored Content-MD5 and size match the local file is skipped, so an interrupted upload resumes
   where it stopped; every uploaded blob carries its MD5, which the service checks on arrival.
3. After the upload, the prefix is listed and checked: every file present with the right MD5,
   nothing else (stray blobs under the prefix are deleted), and the local folder still hashes to
   the same version.
4. Only then is a completion marker written beside the prefix (``<version>.complete.json``) and
   the data asset registered. An interruption at any earlier point leaves no asset, so no job
   can train on half a dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ppe.data.voc import dataset_files, dataset_hash
from ppe.errors import DataError, PpeError

logger = logging.getLogger(__name__)

VERSION_LENGTH = 16
DEFAULT_PREFIX = "ppe-datasets"
HASH_PROPERTY = "dataset_hash"
_CHUNK = 1 << 20


class DataAssetOperations(Protocol):
    """The part of ``MLClient.data`` used here."""

    def get(self, name: str, version: str | None = None, label: str | None = None) -> Any:
        """Return the asset, or raise ``azure.core.exceptions.ResourceNotFoundError``."""

    def create_or_update(self, data: Any) -> Any:
        """Register (or update) a data asset."""


@dataclass(frozen=True)
class LocalFile:
    """One dataset file and its blob."""

    path: Path
    blob_name: str
    size: int
    md5: bytes


@dataclass(frozen=True)
class UploadResult:
    """What :func:`upload_dataset` did.

    Attributes:
        name: Data asset name.
        version: Data asset version (the first 16 hex characters of the content hash).
        dataset_hash: The full sha256 content hash.
        path: The ``azureml://datastores/.../paths/.../`` URI the asset points to.
        files: Number of files in the dataset.
        uploaded: Blobs uploaded by this call.
        skipped: Blobs already present with the right MD5 (resumed upload).
        registered: Whether this call registered the asset (False when it already existed).
    """

    name: str
    version: str
    dataset_hash: str
    path: str
    files: int
    uploaded: int
    skipped: int
    registered: bool

    def to_dict(self) -> dict[str, object]:
        """JSON-compatible form."""
        return dict(self.__dict__)


def asset_version(content_hash: str) -> str:
    """The data asset version for a content hash (see the module docstring for the length)."""
    return content_hash[:VERSION_LENGTH]


def _md5(path: Path) -> bytes:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.digest()


def local_files(root: Path, blob_prefix: str) -> list[LocalFile]:
    """The dataset's files (exactly those :func:`dataset_hash` covers) with blob names and MD5s."""
    return [
        LocalFile(
            path,
            f"{blob_prefix}/{path.relative_to(root).as_posix()}",
            path.stat().st_size,
            _md5(path),
        )
        for path in dataset_files(root)
    ]


def _existing_asset(assets: DataAssetOperations, name: str, version: str) -> Any | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return assets.get(name=name, version=version)
    except ResourceNotFoundError:
        return None


def _remote_blobs(container: Any, blob_prefix: str) -> dict[str, tuple[int, bytes | None]]:
    """Blob name -> (size, Content-MD5) under ``blob_prefix/``."""
    out = {}
    for blob in container.list_blobs(name_starts_with=f"{blob_prefix}/"):
        md5 = blob.content_settings.content_md5 if blob.content_settings else None
        out[blob.name] = (int(blob.size), bytes(md5) if md5 else None)
    return out


def _upload(container: Any, item: LocalFile) -> None:
    from azure.storage.blob import ContentSettings

    content_type = "application/xml" if item.path.suffix == ".xml" else None
    with item.path.open("rb") as stream:
        container.upload_blob(
            item.blob_name,
            stream,
            length=item.size,
            overwrite=True,
            content_settings=ContentSettings(
                content_type=content_type, content_md5=bytearray(item.md5)
            ),
        )


def _verify(container: Any, blob_prefix: str, files: Iterable[LocalFile]) -> None:
    """Every file is there with its MD5 and size; stray blobs under the prefix are deleted."""
    remote = _remote_blobs(container, blob_prefix)
    expected = {item.blob_name: item for item in files}
    bad = [name for name, item in expected.items() if remote.get(name) != (item.size, item.md5)]
    if bad:
        raise PpeError(
            f"{len(bad)} blob(s) missing or different after the upload (first: {bad[0]}); "
            "run the upload again, it resumes"
        )
    for name in sorted(set(remote) - set(expected)):
        logger.warning("deleting stray blob %s (not part of this dataset)", name)
        container.delete_blob(name)


def upload_dataset(
    root: Path,
    *,
    container: Any,
    assets: DataAssetOperations,
    datastore: str,
    name: str,
    prefix: str = DEFAULT_PREFIX,
    description: str | None = None,
    workers: int = 8,
    on_progress: Callable[[int, int], None] | None = None,
) -> UploadResult:
    """Upload ``root`` into the datastore's container and register it as a data asset.

    Args:
        root: A Pascal VOC dataset folder.
        container: An ``azure.storage.blob.ContainerClient`` for the datastore's container.
        assets: ``MLClient.data`` (get / create_or_update of data assets).
        datastore: The datastore name (the asset's path is ``azureml://datastores/<name>/...``).
        name: Data asset name.
        prefix: Top folder of uploaded datasets in the container.
        description: Data asset description.
        workers: Parallel blob uploads.
        on_progress: Called with (files done, files total) after each file.

    Returns:
        What was uploaded and registered.

    Raises:
        DataError: ``root`` is not a dataset folder, is empty, or changed during the upload.
        PpeError: An existing asset of that version has another full hash, or the upload did
            not verify.
    """
    root = Path(root)
    content_hash = dataset_hash(root)
    version = asset_version(content_hash)
    blob_prefix = f"{prefix.strip('/')}/{name}/{version}"
    uri = f"azureml://datastores/{datastore}/paths/{blob_prefix}/"

    existing = _existing_asset(assets, name, version)
    if existing is not None:
        recorded = (getattr(existing, "properties", None) or {}).get(HASH_PROPERTY)
        if recorded not in (None, content_hash):
            raise PpeError(
                f"data asset {name}:{version} exists with dataset_hash {recorded}, not "
                f"{content_hash} (a hash-prefix collision); upload under another --name"
            )
        logger.info("data asset %s:%s already registered: nothing to upload", name, version)
        count = len(dataset_files(root))
        return UploadResult(name, version, content_hash, uri, count, 0, count, False)

    files = local_files(root, blob_prefix)
    if not files:
        raise DataError(f"{root}: no dataset files (Annotations/, JPEGImages/, ImageSets/)")
    remote = _remote_blobs(container, blob_prefix)
    todo = [item for item in files if remote.get(item.blob_name) != (item.size, item.md5)]
    skipped = len(files) - len(todo)
    if skipped:
        logger.info("%d of %d files already uploaded: resuming", skipped, len(files))
    done = skipped

    def upload_one(item: LocalFile) -> None:
        _upload(container, item)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(upload_one, todo):
            done += 1
            if on_progress is not None:
                on_progress(done, len(files))

    _verify(container, blob_prefix, files)
    if dataset_hash(root) != content_hash:
        raise DataError(f"{root} changed during the upload; upload it again")
    marker = {
        HASH_PROPERTY: content_hash,
        "files": len(files),
        "bytes": sum(item.size for item in files),
    }
    container.upload_blob(
        f"{blob_prefix}.complete.json", json.dumps(marker, indent=2).encode(), overwrite=True
    )
    assets.create_or_update(data_entity(name, version, uri, content_hash, len(files), description))
    logger.info(
        "registered data asset %s:%s (%d files, %d uploaded now)",
        name,
        version,
        len(files),
        len(todo),
    )
    return UploadResult(name, version, content_hash, uri, len(files), len(todo), skipped, True)


def data_entity(
    name: str,
    version: str,
    uri: str,
    content_hash: str,
    files: int,
    description: str | None = None,
) -> Any:
    """The azure-ai-ml ``Data`` entity (``uri_folder``) for an uploaded dataset."""
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Data

    return Data(
        name=name,
        version=version,
        type=AssetTypes.URI_FOLDER,
        path=uri,
        description=description or "Pascal VOC hard-hat dataset uploaded by `ppe aml data upload`",
        properties={HASH_PROPERTY: content_hash, "files": str(files)},
        tags={HASH_PROPERTY: content_hash},
    )


def default_container(ml_client: Any, credential: Any) -> tuple[Any, str]:
    """The blob container behind the workspace's default datastore, and the datastore's name.

    Args:
        ml_client: An ``MLClient``.
        credential: The token credential for the storage data plane (the identity needs
            Storage Blob Data Contributor on the account).

    Returns:
        (``ContainerClient``, datastore name).

    Raises:
        PpeError: The default datastore is not an Azure Blob datastore.
    """
    from azure.storage.blob import BlobServiceClient

    store = ml_client.datastores.get_default()
    account = getattr(store, "account_name", None)
    container = getattr(store, "container_name", None)
    if not account or not container:
        raise PpeError(
            f"the default datastore {store.name!r} is not an Azure Blob datastore; set a blob "
            "datastore as the workspace default"
        )
    protocol = getattr(store, "protocol", None) or "https"
    endpoint = getattr(store, "endpoint", None) or "core.windows.net"
    service = BlobServiceClient(f"{protocol}://{account}.blob.{endpoint}", credential=credential)
    return service.get_container_client(container), str(store.name)
