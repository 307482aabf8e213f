"""The keys a test's factory trusts: those its own root (under FACTORY_HOME) certified."""

from collections.abc import Callable
from pathlib import Path

from securesystemslib.signer import Signer

from factory.lineage import LineageRecord, ParentLink, record_digest, sign_record, verify_record
from factory.settings import Settings
from storage.lineage import RecordStore, record_key
from storage.objectstore import ObjectStore
from storage.trust import TrustedKeys, load_trusted_keys, resolve_anchor


def local_trust(store: ObjectStore, keys_dir: Path | None = None) -> TrustedKeys:
    """What the factory whose keys are in ``keys_dir`` (default: under FACTORY_HOME) trusts
    in ``store``, as `factory verify` there would."""
    return load_trusted_keys(store, resolve_anchor(None, keys_dir or Settings().keys_dir))


def forge_chain(
    store: ObjectStore,
    digest: str,
    signer: Signer,
    change: Callable[[LineageRecord], dict] = lambda record: {},
) -> str:
    """Re-sign the records of ``digest`` and all its ancestors with ``signer``, changing each
    as ``change`` says and re-linking parents, as an attacker who can write to the store
    would; the new record digest of ``digest``."""
    trusted = local_trust(store)
    records = RecordStore(store)
    forged: dict[str, str] = {}

    def resign(current: str) -> str:
        if current not in forged:
            record = verify_record(records.read(current), trusted.lineage)
            parents = [
                ParentLink(digest=p.digest, record_digest=resign(p.digest)) for p in record.parents
            ]
            update = {"key_id": signer.public_key.keyid, "parents": parents, **change(record)}
            envelope = sign_record(record.model_copy(update=update), signer)
            store.put(record_key(current), envelope)
            forged[current] = record_digest(envelope)
        return forged[current]

    return resign(digest)
