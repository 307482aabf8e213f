"""Content-addressed assets: an object's key derives from the SHA-256 of its bytes."""

from factory.assets import AssetRef, sha256_hex
from factory.errors import IntegrityError, ObjectNotFound
from storage.objectstore import ObjectStore


def asset_key(digest: str) -> str:
    # Two hex characters of fan-out keep local directories and S3 listings small.
    return f"assets/sha256/{digest[:2]}/{digest}"


def put_asset(
    store: ObjectStore, data: bytes, media_type: str, parents: tuple[str, ...] = ()
) -> AssetRef:
    """Store bytes under their digest (write-once) and return a reference to them."""
    digest = sha256_hex(data)
    key = asset_key(digest)
    store.put_if_absent(key, data, media_type.split(";")[0])
    return AssetRef(
        digest=digest,
        uri=store.uri(key),
        key=key,
        media_type=media_type,
        size=len(data),
        parents=parents,
    )


def get_asset(store: ObjectStore, ref: AssetRef) -> bytes:
    """The asset's bytes, checked against its digest."""
    try:
        data = store.get(ref.key)
    except ObjectNotFound:
        raise ObjectNotFound(
            f"asset {ref.digest} is missing from {store.url} (key {ref.key}); "
            "rerun the order to produce it again"
        ) from None
    actual = sha256_hex(data)
    if actual != ref.digest:
        raise IntegrityError(
            f"asset {ref.key} in {store.url} is corrupted: its bytes hash to {actual}, "
            f"not {ref.digest}. Delete the object and rerun the order to rebuild it"
        )
    return data
