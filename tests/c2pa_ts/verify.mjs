// Reads and validates the C2PA manifest store of MP4 files with TrustNXT's c2pa-ts, a
// TypeScript implementation independent of c2pa-rs, and prints one JSON object per file:
//
//   node verify.mjs FILE... [--label LABEL]...
//
// For each file: the active manifest's label and validation status entries (c2pa-ts checks
// the claim signature, the certificate profile, every assertion's hashed URI and the BMFF
// hash), then every manifest in the store with its assertion labels, its own validation
// against the file (an embedded manifest's hard binding is to its own asset, so it reports
// assertion.bmffHash.mismatch), its ingredients and whether their links hold, and the data
// of the assertions named by --label as c2pa-ts decoded them. c2pa-ts 0.9.4 has no trust anchors: its
// `signingCredential.trusted` means a well-formed certificate in its validity period, so each
// manifest also gives its signer's certificate chain for the caller to check.
import * as fs from 'node:fs/promises';

import { BMFF } from '@trustnxt/c2pa-ts/asset';
import { CBORBox, JSONBox, SuperBox } from '@trustnxt/c2pa-ts/jumbf';
import { IngredientAssertion, ManifestStore, ValidationResult } from '@trustnxt/c2pa-ts/manifest';

// c2pa-ts reads BMFF only for the HEIF brands; an MP4's ftyp names these instead.
for (const brand of ['isom', 'iso2', 'iso4', 'iso5', 'iso6', 'mp41', 'mp42', 'avc1', 'dash']) {
    BMFF.canReadBrands.add(brand);
}

function plain(value) {
    // CBOR byte strings would otherwise print as {"0": 1, ...}; show them for what they are.
    if (value instanceof Uint8Array) return { cbor_bytes: Buffer.from(value).toString('base64') };
    if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), plain(v)]));
    if (Array.isArray(value)) return value.map(plain);
    if (value && typeof value === 'object') {
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
    }
    return value;
}

function toJSON(value) {
    // Integers beyond 2**53 decode as BigInt, which JSON.stringify refuses: print their digits.
    if (typeof value === 'bigint') return value.toString();
    if (Array.isArray(value)) return `[${value.map(toJSON).join(',')}]`;
    if (value && typeof value === 'object') {
        const members = Object.entries(value).filter(([, v]) => v !== undefined);
        return `{${members.map(([k, v]) => `${JSON.stringify(k)}:${toJSON(v)}`).join(',')}}`;
    }
    return JSON.stringify(value ?? null);
}

function statuses(result) {
    return result.statusEntries.map(entry => ({
        code: entry.code,
        success: entry.success,
        url: entry.url ?? null,
        explanation: entry.explanation ?? null,
    }));
}

function assertionData(assertion) {
    const content = assertion.sourceBox?.contentBoxes.find(box => box !== undefined);
    if (content instanceof CBORBox) return { kind: 'Cbor', data: plain(content.content) };
    if (content instanceof JSONBox) return { kind: 'Json', data: plain(content.content) };
    return { kind: content?.type ?? null, data: null };
}

function certificates(signature) {
    if (!signature?.certificate) return [];
    return [signature.certificate, ...signature.chainCertificates].map(certificate =>
        Buffer.from(certificate.rawData).toString('base64'),
    );
}

async function linkHolds(manifest, reference) {
    if (!reference) return null;
    return manifest.validateHashedReference(reference);
}

async function ingredients(manifest) {
    // c2pa-ts 0.9.4 validates only ingredients labelled c2pa.ingredient (v1), and for
    // those it checks neither the hash of the ingredient's manifest nor (it looks the
    // manifest up by URI, not label) its claim signature. So every version is validated
    // here, and both links are checked with c2pa-ts's own hashed-URI check.
    const found = [];
    for (const assertion of manifest.assertions?.assertions ?? []) {
        if (!(assertion instanceof IngredientAssertion)) continue;
        let validation;
        try {
            validation = statuses(await assertion.validate(manifest));
        } catch (error) {
            validation = statuses(ValidationResult.fromError(error));
        }
        found.push({
            label: assertion.fullLabel,
            title: assertion.title ?? null,
            relationship: assertion.relationship ?? null,
            active_manifest: assertion.activeManifest?.uri ?? null,
            manifest_hash_holds: await linkHolds(manifest, assertion.activeManifest),
            claim_signature_hash_holds: await linkHolds(manifest, assertion.claimSignature),
            validation,
        });
    }
    return found;
}

async function report(path, labels) {
    const buf = new Uint8Array(await fs.readFile(path));
    if (!BMFF.canRead(buf)) return { file: path, error: 'not a BMFF file c2pa-ts reads' };
    const asset = new BMFF(buf);
    const jumbf = asset.getManifestJUMBF();
    if (!jumbf) return { file: path, error: 'no C2PA manifest store' };
    let store;
    try {
        store = ManifestStore.read(SuperBox.fromBuffer(jumbf));
    } catch (error) {
        return { file: path, error: 'unreadable manifest store', validation: statuses(ValidationResult.fromError(error)) };
    }
    const active = store.getActiveManifest();
    const manifests = [];
    for (const manifest of store.manifests) {
        const assertions = manifest.assertions?.assertions ?? [];
        const ours = {};
        for (const assertion of assertions) {
            if (labels.includes(assertion.label)) ours[assertion.fullLabel] = assertionData(assertion);
        }
        let validation;
        try {
            validation = statuses(await manifest.validate(asset));
        } catch (error) {
            validation = statuses(ValidationResult.fromError(error));
        }
        manifests.push({
            label: manifest.label,
            active: manifest === active,
            title: manifest.claim?.title ?? null,
            // The certificates c2pa-ts checked the claim signature with, leaf first (DER,
            // base64), for the caller to judge against its own trust anchors.
            signer_chain: certificates(manifest.signature?.signatureData),
            assertions: assertions.map(assertion => assertion.fullLabel),
            data: ours,
            ingredients: await ingredients(manifest),
            validation,
        });
    }
    let validation;
    try {
        validation = statuses(await store.validate(asset));
    } catch (error) {
        validation = statuses(ValidationResult.fromError(error));
    }
    return { file: path, active_manifest: active?.label ?? null, validation, manifests };
}

const args = process.argv.slice(2);
const files = [];
const labels = [];
for (let i = 0; i < args.length; i++) {
    if (args[i] === '--label') labels.push(args[++i]);
    else files.push(args[i]);
}
if (!files.length) {
    console.error('usage: node verify.mjs FILE... [--label LABEL]...');
    process.exit(2);
}
for (const file of files) console.log(toJSON(await report(file, labels)));
