#!/usr/bin/python3
"""A liaison partner written from docs/protocol.md, docs/errors.md and schemas/ only.

It exists to prove that a partner agency can integrate with a liaison gateway in another
language, with another JOSE library (jwcrypto), from the published contract alone. It uses only
the Python standard library and jwcrypto (Debian: apt-get install python3-jwcrypto) and must be
run with Debian's /usr/bin/python3.

Every sub-command reads JSON (or a JWS) and writes one JSON object on stdout:

  keygen        --party-id ID --subject SUBJECT --out DIR [--name N] [--kind K] [--alg EdDSA|ES256]
                [--receipt-batches]
                a new signing key (private JWK to DIR/key.json, mode 0600) and a new X25519
                encryption key (DIR/enc-key.json, mode 0600); prints the party document, which
                publishes both (protocol.md, Key discovery). --receipt-batches: the document
                declares "receiptBatches": true (protocol.md, Batch receipts, Who receives them)
  sign-message  --key FILE --party-id ID --to ID [--to ID ...] --case-ref REF --type TYPE
                --body-file FILE [--schema-version N] [--in-reply-to ID]
                [--classification C] [--dissemination D] [--ttl-seconds S]
                prints {"jws", "id", "digest"}
  verify        --jwks PARTY_DOCUMENT [--jwks ...] --self ID [--sent JWS_FILE ...] [--skew-seconds S]
                [--enc-key FILE ...] [--receipt-batches [--batch-log DIR]]
                reads a compact JWS on stdin (the exact NATS message data); prints
                {"typ", "payload", "digest", "kid"}; on failure prints {"error": {"code", "detail"}}
                and exits 1. --sent names the JWS files this party sent: a receipt must answer one.
                A message whose body carries `personalData` (a JWE) is only accepted once that
                decrypts with one of the --enc-key files (this party's encryption keys, current
                and earlier ones) and validates (protocol.md, Personal data); the plaintext is
                then printed as "personalData".
                --receipt-batches (the batching mode, for a party whose document declared
                receiptBatches): a batch receipt (typ liaison-receipt-batch+jws) is verified too,
                steps 1-23 and B1-B4 (protocol.md, Verification order); without it that typ is
                refused at step 10 (jws_header_invalid), as a party that declared nothing must
                never receive one. --batch-log DIR is this party's log of batches and deliveries:
                B4 compares the batch with the one logged under its id; a new batch is logged
                (DIR/batches/<id>.jws) and closes the deliveries its entries name
                (DIR/deliveries.json); the result then also holds "duplicate", "closed" (message
                ids this batch closed) and "alreadyClosed".
  verify-handover-record  --record FILE --jwks PARTY_DOCUMENT [--jwks ...] [--signed-once]
                checks a handover record (a JWS in General JSON Serialization) offline, as
                protocol.md "Handover record" says: its shape, each protected header, each key,
                and EACH signature on its own; then that it is countersigned (unless
                --signed-once), signed by handedOverBy then receivedBy, and the schema. Prints
                {"ok": true, "payload", "signers"}; on failure {"ok": false, "error": {...}}, exit 1.
  sign-receipt  --key FILE --party-id ID --jws-file RECEIVED_JWS_FILE
                prints {"jws", "id", "digest"} of an `accepted` receipt for those exact bytes.
                Run `verify` on the bytes first: an accepted receipt states that they passed.
  sign-receipt-batch  --key FILE --party-id ID --jwks PARTY_DOCUMENT [--jwks ...]
                --jws-file RECEIVED_JWS_FILE [--jws-file ...]
                prints {"jws", "id", "digest", "to", "accepted"} of ONE batch receipt
                (protocol.md, Batch receipts, Building one) accepting those exact bytes, all
                from one sender, at most 300, no id twice; refused unless the sender's
                registered document (--jwks) declares receiptBatches. `verify` each message first.

Errors are reported with the wire codes of docs/errors.md where one applies.
"""

import argparse
import hashlib
import json
import os
import re
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

try:
    from jwcrypto import jwe, jwk, jws
    from jwcrypto.common import base64url_decode, base64url_encode
except ImportError:  # pragma: no cover - reported to the caller
    sys.stderr.write(
        "python_partner: jwcrypto is missing: apt-get install python3-jwcrypto "
        "(and run this script with /usr/bin/python3)\n"
    )
    sys.exit(3)

MESSAGE_TYP = "liaison-message+jws"  # protocol.md, JWS profile
RECEIPT_TYP = "liaison-receipt+jws"
RECEIPT_BATCH_TYP = "liaison-receipt-batch+jws"  # protocol.md, Batch receipts
MAX_BATCH_ENTRIES = 300  # protocol.md, Batch receipts: "at most 300" (receipt-batch.v1.json)
MAX_BATCH_BYTES = 65_536  # protocol.md, Batch receipts, Size: the compact JWS, at most
HANDOVER_RECORD_TYP = "liaison-handover-record+jws"  # protocol.md, Handover record
# protocol.md, Personal data, The profile
PD_ALG, PD_ENC = "ECDH-ES+A256KW", "A256GCM"
PD_PROTECTED = {"enc": PD_ENC, "cty": "liaison-personal-data+json"}
PD_MAX_RECIPIENTS = 65
MAX_JSON_DEPTH = 32  # protocol.md, Size limit: the object itself is level 1
KEY_TYPES = {"EdDSA": ("OKP", "Ed25519"), "ES256": ("EC", "P-256")}  # alg -> (kty, crv)
# protocol.md "What one NATS message contains" / step 3. `$` in Python matches before a final
# newline, which the docs call malformed: fullmatch() is used instead.
COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z"
)
# protocol.md, Key discovery: party document times carry a zone, `Z` or `+hh:mm` / `-hh:mm`.
ZONED_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:Z|([+-])([0-9]{2}):([0-9]{2}))"
)
PARTY_ID = re.compile(r"(?:[A-Z]{2}|INT)-[A-Z0-9]{2,12}-[A-Z0-9]{2,16}")
MAX_MESSAGE_BYTES = 262_144  # protocol.md, Size limit (default)
DEFAULT_SKEW_SECONDS = 300  # protocol.md, Clock skew and expiry (default)
DEFAULT_TTL_SECONDS = 7 * 86_400
SCHEMAS_DIR = Path(__file__).resolve().parent.parent.parent / "schemas"
SCHEMA_BASE = "https://liaison-gateway.example/schemas/"


class Refused(Exception):
    """A check failed; `code` is a wire code of docs/errors.md (or a local one)."""

    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


# --------------------------------------------------------------------------------------------
# small helpers


def utc_text(t):
    """RFC 3339 UTC with milliseconds and Z, as the reference gateway writes (protocol.md)."""
    t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def now_ms():
    t = datetime.now(timezone.utc)
    return int(t.replace(microsecond=0).timestamp()) * 1000 + t.microsecond // 1000


def _instant_ms(groups, offset_minutes=0):
    y, mo, d, h, mi, s, frac = groups
    try:  # a leap second (:60) or an impossible date is not a representable instant
        t = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=timezone.utc)
    except ValueError:
        return None
    # milliseconds precision, further digits ignored (protocol.md, The envelope)
    return (int(t.timestamp()) - offset_minutes * 60) * 1000 + int(((frac or "") + "000")[:3])


def timestamp_ms(text):
    """Milliseconds since the epoch of a schema `timestamp` (UTC, `Z`), None if not one."""
    m = TIMESTAMP.fullmatch(text) if isinstance(text, str) else None
    return None if m is None else _instant_ms(m.groups())


def party_doc_time_ms(text):
    """A validFrom / validUntil / revokedAt of a party document (RFC 3339 with a zone)."""
    m = ZONED_TIME.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        return None
    sign, hh, mm = m.groups()[7:]
    offset = 0 if sign is None else (1 if sign == "+" else -1) * (int(hh) * 60 + int(mm))
    return _instant_ms(m.groups()[:7], offset)


def typ_kind(typ, allowed=(MESSAGE_TYP, RECEIPT_TYP)):
    """protocol.md, JWS profile: `typ` compared case-insensitively, `application/` optional."""
    if not isinstance(typ, str):
        return None
    t = typ.lower()
    t = t[len("application/") :] if t.startswith("application/") else t
    return t if t in allowed else None


B64URL = re.compile(r"[A-Za-z0-9_-]+")


def canonical_b64(segment):
    """Decoded bytes of a non-empty canonical base64url text (no padding), None if not one."""
    if not isinstance(segment, str) or B64URL.fullmatch(segment) is None:
        return None
    try:
        raw = base64url_decode(segment)
    except Exception:
        return None
    return raw if base64url_encode(raw) == segment else None


def json_depth(text):
    """Nesting depth of JSON text, measured before parsing (protocol.md, Size limit)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _bad_strings(value):
    """True if a string or member name holds U+0000 or a lone surrogate."""
    if isinstance(value, str):
        return any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, list):
        return any(_bad_strings(v) for v in value)
    if isinstance(value, dict):
        return any(_bad_strings(k) or _bad_strings(v) for k, v in value.items())
    return False


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def strict_json_object(raw, what):
    """UTF-8 JSON of an object within the protocol's limits; raises ValueError saying which."""
    try:
        text = raw.decode("utf-8")  # strict: an encoded surrogate is refused, never repaired
    except UnicodeDecodeError:
        raise ValueError(f"the {what} is not UTF-8") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ValueError(f"the {what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError:
        raise ValueError(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"the {what} is not a JSON object")
    if _bad_strings(value):
        raise ValueError(f"a string of the {what} holds U+0000 or a lone surrogate")
    return value


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def b64url_json(segment, what):
    try:
        raw = base64url_decode(segment)
    except Exception:
        raise Refused("malformed", f"the {what} is not base64url") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("malformed", f"the {what} is not UTF-8") from None
    try:
        return json.loads(text)
    except ValueError:
        raise Refused("malformed", f"the {what} is not JSON") from None


def out(obj):
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def read_json_file(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def alg_of_key(key):
    kty, crv = key.get("kty"), key.get("crv")
    for alg, (k, c) in KEY_TYPES.items():
        if (kty, crv) == (k, c):
            return alg
    raise Refused("key_store_invalid", "the key is neither OKP/Ed25519 nor EC/P-256")


def public_jwk(key_members):
    """Only the public key members (RFC 7638 required members) of a JWK dict."""
    names = ("crv", "kty", "x", "y") if key_members.get("kty") == "EC" else ("crv", "kty", "x")
    return {n: key_members[n] for n in names if n in key_members}


# --------------------------------------------------------------------------------------------
# JSON Schema (draft 2020-12), the subset of keywords schemas/ uses, formats asserted
# (errors.md, schema_invalid: "JSON Schema draft 2020-12, with formats").


class Schemas:
    def __init__(self, directory):
        self.by_id = {}
        for path in sorted(Path(directory).glob("*.json")):
            doc = read_json_file(path)
            self.by_id[doc["$id"]] = doc

    def body_schema_id(self, type_, version):
        # protocol.md, The envelope, `body`: $id https://liaison-gateway.example/schemas/<type>/v<n>.json
        return f"{SCHEMA_BASE}{type_}/v{version}.json"

    def errors(self, schema_id, instance):
        found = []
        self._check(self.by_id[schema_id], instance, "", self.by_id[schema_id], found)
        return found

    def _resolve(self, ref, root):
        base, _, fragment = ref.partition("#")
        doc = self.by_id[base] if base else root
        node = doc
        for part in [p for p in fragment.split("/") if p]:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, doc

    def _check(self, s, v, at, root, found):
        if s is True or s == {}:
            return
        if s is False:
            found.append((at, "no value allowed"))
            return
        if "not" in s:
            sub = []
            self._check(s["not"], v, at, root, sub)
            if not sub:
                found.append((at, "must not be present / match"))
        if "$ref" in s:
            target, doc = self._resolve(s["$ref"], root)
            self._check(target, v, at, doc, found)
        if "type" in s and not type_ok(s["type"], v):
            found.append((at, f"must be {s['type']}"))
            return
        if "const" in s and not json_equal(s["const"], v):
            found.append((at, "must equal the constant"))
        if "enum" in s and not any(json_equal(e, v) for e in s["enum"]):
            found.append((at, "must be one of the allowed values"))
        if isinstance(v, str):
            if "minLength" in s and len(v) < s["minLength"]:
                found.append((at, "too short"))
            if "maxLength" in s and len(v) > s["maxLength"]:
                found.append((at, "too long"))
            if "pattern" in s:
                # ECMA-262 `$` never matches before a final newline; Python's does, so use \Z.
                pattern = s["pattern"][:-1] + r"\Z" if s["pattern"].endswith("$") else s["pattern"]
                if re.search(pattern, v) is None:
                    found.append((at, "does not match the pattern"))
            if "format" in s and not format_ok(s["format"], v):
                found.append((at, f"not a valid {s['format']}"))
        if is_number(v):
            if "minimum" in s and v < s["minimum"]:
                found.append((at, "below the minimum"))
            if "maximum" in s and v > s["maximum"]:
                found.append((at, "above the maximum"))
        if isinstance(v, list):
            if "minItems" in s and len(v) < s["minItems"]:
                found.append((at, "too few items"))
            if "maxItems" in s and len(v) > s["maxItems"]:
                found.append((at, "too many items"))
            if s.get("uniqueItems"):
                seen = [json.dumps(x, sort_keys=True) for x in v]
                if len(set(seen)) != len(seen):
                    found.append((at, "items are not unique"))
            if "items" in s:
                for i, item in enumerate(v):
                    self._check(s["items"], item, f"{at}/{i}", root, found)
        if isinstance(v, list) and "contains" in s:
            if not any(not self._sub_errors(s["contains"], item, at, root) for item in v):
                found.append((at, "contains no matching item"))
        if isinstance(v, dict):
            if "minProperties" in s and len(v) < s["minProperties"]:
                found.append((at, "too few properties"))
            if "maxProperties" in s and len(v) > s["maxProperties"]:
                found.append((at, "too many properties"))
            for name in s.get("required", []):
                if name not in v:
                    found.append((at, f"missing required property '{name}'"))
            props = s.get("properties", {})
            for name, value in v.items():
                pointer = f"{at}/{name.replace('~', '~0').replace('/', '~1')}"
                if name in props:
                    self._check(props[name], value, pointer, root, found)
                elif s.get("additionalProperties") is False:
                    found.append((pointer, "property not allowed"))
        for sub in s.get("allOf", []):
            self._check(sub, v, at, root, found)
        if "anyOf" in s:
            if not any(not self._sub_errors(sub, v, at, root) for sub in s["anyOf"]):
                found.append((at, "matches none of anyOf"))
        if "if" in s:
            if not self._sub_errors(s["if"], v, at, root):
                if "then" in s:
                    self._check(s["then"], v, at, root, found)
            elif "else" in s:
                self._check(s["else"], v, at, root, found)
        unknown = set(s) - KNOWN_KEYWORDS
        if unknown:
            raise RuntimeError(f"schema keyword(s) not implemented: {sorted(unknown)}")

    def _sub_errors(self, s, v, at, root):
        sub = []
        self._check(s, v, at, root, sub)
        return sub


KNOWN_KEYWORDS = {
    "$schema", "$id", "$defs", "$ref", "$comment", "title", "description", "examples",
    "type", "const", "enum", "minLength", "maxLength", "pattern", "format", "minimum",
    "maximum", "minItems", "maxItems", "uniqueItems", "items", "required", "properties",
    "additionalProperties", "allOf", "anyOf", "not", "if", "then", "else", "default",
    "contains", "minProperties", "maxProperties",
}


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def type_ok(t, v):
    if isinstance(t, list):
        return any(type_ok(x, v) for x in t)
    return {
        "object": lambda: isinstance(v, dict),
        "array": lambda: isinstance(v, list),
        "string": lambda: isinstance(v, str),
        "boolean": lambda: isinstance(v, bool),
        "null": lambda: v is None,
        "number": lambda: is_number(v),
        "integer": lambda: is_number(v) and float(v).is_integer(),
    }[t]()


def json_equal(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if is_number(a) and is_number(b):
        return a == b
    return type(a) is type(b) and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def format_ok(fmt, v):
    if fmt == "date-time":  # RFC 3339, a leap second (23:59:60 UTC) admitted, as ajv-formats does
        m = re.fullmatch(
            r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
            r"([Zz]|[+-][0-9]{2}:[0-9]{2})",
            v,
        )
        if m is None:
            return False
        day, hh, mm, ss, zone = m.groups()
        leap = ss == "60"
        try:
            t = datetime.fromisoformat(
                f"{day}T{hh}:{mm}:{'59' if leap else ss}{'+00:00' if zone in 'Zz' else zone}"
            ).astimezone(timezone.utc)
        except ValueError:
            return False
        return not leap or (t.hour, t.minute) == (23, 59)
    if fmt == "date":
        try:
            datetime.strptime(v, "%Y-%m-%d")
            return True
        except ValueError:
            return False
    if fmt == "uuid":
        return re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", v) is not None
    return True


# --------------------------------------------------------------------------------------------
# party documents (protocol.md, Key discovery)


def _key_times(k, where):
    """validFrom (required), validUntil and revokedAt of a party document key, in ms."""
    valid_from = party_doc_time_ms(k.get("validFrom"))
    if valid_from is None:
        raise Refused("request_invalid", f"{where}: validFrom missing or unparsable")
    bounds = {}
    for name in ("validUntil", "revokedAt"):
        if name in k:
            bounds[name] = party_doc_time_ms(k[name])
            if bounds[name] is None:
                raise Refused("request_invalid", f"{where}: {name} unparsable")
    if bounds.get("validUntil") is not None and bounds["validUntil"] <= valid_from:
        raise Refused("request_invalid", f"{where}: validUntil is not after validFrom")
    return {
        "validFrom": valid_from,
        "validUntil": bounds.get("validUntil"),
        "revokedAt": bounds.get("revokedAt"),
    }


def _encryption_key(k, where):
    """protocol.md, Key discovery, encryption keys: X25519, ECDH-ES+A256KW, kid the thumbprint."""
    if (k.get("kty"), k.get("crv")) != ("OKP", "X25519"):
        raise Refused("request_invalid", f"{where}: an encryption key must be OKP/X25519")
    x = canonical_b64(k.get("x"))
    if x is None or len(x) != 32:
        raise Refused("request_invalid", f"{where}: x is not a 32-byte X25519 public key")
    if k.get("alg") != PD_ALG:
        raise Refused("request_invalid", f"{where}: an encryption key's alg must be {PD_ALG}")
    key = jwk.JWK(kty="OKP", crv="X25519", x=k["x"])
    if k.get("kid") != key.thumbprint():
        raise Refused("request_invalid", f"{where}: kid is not the RFC 7638 thumbprint")
    return {"jwk": key, "alg": PD_ALG, **_key_times(k, where)}


def load_party_document(path):
    """Checks a party document as protocol.md / errors.md (request_invalid) describe.

    Returns (party, signing keys by kid, encryption keys by kid). Only signing keys verify.
    """
    doc = read_json_file(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("party"), dict):
        raise Refused("request_invalid", f"{path}: no `party` member")
    party = doc["party"]
    for name in ("id", "name", "country", "kind", "inboundSubject"):
        if not isinstance(party.get(name), str) or party[name] == "":
            raise Refused("request_invalid", f"{path}: party.{name} missing or empty")
    if PARTY_ID.fullmatch(party["id"]) is None:
        raise Refused("request_invalid", f"{path}: party.id is not a party id")
    if "receiptBatches" in party and not isinstance(party["receiptBatches"], bool):
        raise Refused("request_invalid", f"{path}: party.receiptBatches is not true or false")
    keys = doc.get("keys")
    if not isinstance(keys, list) or not 1 <= len(keys) <= 64:
        raise Refused("request_invalid", f"{path}: `keys` must hold 1 to 64 keys")
    registered = {}
    encryption = {}
    for i, k in enumerate(keys):
        where = f"{path}: keys[{i}]"
        if not isinstance(k, dict):
            raise Refused("request_invalid", f"{where} is not an object")
        if "d" in k:  # whatever its use
            raise Refused("request_invalid", f"{where} contains a private key (d)")
        kid = k.get("kid")
        if isinstance(kid, str) and (kid in registered or kid in encryption):
            raise Refused("request_invalid", f"{where}: kid {kid} is listed twice")
        if k.get("use") == "enc":
            encryption[k["kid"]] = _encryption_key(k, where)  # raises first if kid is wrong
            continue
        if k.get("alg") not in KEY_TYPES:
            raise Refused("request_invalid", f"{where}: alg must be EdDSA or ES256")
        if (k.get("kty"), k.get("crv")) != KEY_TYPES[k["alg"]]:
            raise Refused("request_invalid", f"{where}: kty/crv do not match alg")
        try:
            key = jwk.JWK(**public_jwk(k))
        except Exception as e:
            raise Refused("request_invalid", f"{where}: not a valid public key ({e})") from None
        if k.get("kid") != key.thumbprint():
            raise Refused("request_invalid", f"{where}: kid is not the RFC 7638 thumbprint")
        registered[k["kid"]] = {"jwk": key, "alg": k["alg"], **_key_times(k, where)}
    if not registered:
        raise Refused("request_invalid", f"{path}: keys holds no signing key")
    return party, registered, encryption


def load_registry(paths):
    """The registered parties of --jwks party documents: {party id: {party, keys, enc}}."""
    registry = {}
    owner = {}
    for path in paths:
        party, keys, enc = load_party_document(path)
        for kid in list(keys) + list(enc):
            if owner.setdefault(kid, party["id"]) != party["id"]:  # a key never moves party
                raise Refused("request_invalid", f"key {kid} is registered for another party")
        registry[party["id"]] = {"party": party, "keys": keys, "enc": enc}
    return registry


# --------------------------------------------------------------------------------------------
# keys and signing


def read_private_jwk(path):
    st = os.stat(path)
    if st.st_mode & 0o077:
        raise Refused("key_store_invalid", f"{path} is readable by group or others")
    members = read_json_file(path)
    if not isinstance(members, dict) or "d" not in members:
        raise Refused("key_store_invalid", f"{path} holds no private key")
    return members


def write_private_jwk(path, members):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(members, f, indent=2)
        f.write("\n")


def load_private_key(path):
    members = read_private_jwk(path)
    key = jwk.JWK(**{n: members[n] for n in ("kty", "crv", "x", "y", "d") if n in members})
    alg = alg_of_key(members)
    kid = key.thumbprint()
    if members.get("kid", kid) != kid:
        raise Refused("key_store_invalid", f"{path}: kid is not the key's thumbprint")
    return key, kid, alg


def load_encryption_key(path):
    """One of this party's X25519 private keys (protocol.md, Personal data); (kid, JWK)."""
    members = read_private_jwk(path)
    if (members.get("kty"), members.get("crv")) != ("OKP", "X25519"):
        raise Refused("key_store_invalid", f"{path} is not an X25519 key")
    key = jwk.JWK(**{n: members[n] for n in ("kty", "crv", "x", "d")})
    kid = key.thumbprint()
    if members.get("kid", kid) != kid:
        raise Refused("key_store_invalid", f"{path}: kid is not the key's thumbprint")
    return kid, key


def sign_compact(payload_obj, key, kid, alg, typ):
    """Serialises the payload once and signs it; returns the compact JWS string."""
    payload = json.dumps(payload_obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    header = json.dumps({"alg": alg, "kid": kid, "typ": typ}, separators=(",", ":"))
    token = jws.JWS(payload)
    token.add_signature(key, alg=None, protected=header)
    compact = token.serialize(compact=True)
    # Belt and braces: the profile is strict, make sure the library added nothing.
    h, p, _ = compact.split(".")
    if json.loads(base64url_decode(h)) != {"alg": alg, "kid": kid, "typ": typ}:
        raise RuntimeError("jwcrypto produced an unexpected protected header")
    if base64url_decode(p) != payload or COMPACT.fullmatch(compact) is None:
        raise RuntimeError("jwcrypto produced an unexpected payload segment")
    return compact


def schema_check(schemas, schema_id, instance, code):
    problems = schemas.errors(schema_id, instance)
    if problems:
        pointers = ", ".join(f"{p or '/'} ({why})" for p, why in problems[:8])
        raise Refused(code, f"does not match {schema_id.removeprefix(SCHEMA_BASE)}: {pointers}")


def cmd_keygen(args):
    if PARTY_ID.fullmatch(args.party_id) is None:
        raise Refused("request_invalid", "--party-id is not a party id")
    valid_from = utc_text(datetime.now(timezone.utc))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    published = []
    # The signing key (EdDSA or ES256), then the encryption key (X25519, protocol.md Key
    # discovery: "use": "enc", "alg": "ECDH-ES+A256KW", kid its RFC 7638 thumbprint).
    for file, (kty, crv), alg, use in (
        ("key.json", KEY_TYPES[args.alg], args.alg, "sig"),
        ("enc-key.json", ("OKP", "X25519"), PD_ALG, "enc"),
    ):
        key = jwk.JWK.generate(kty=kty, crv=crv)
        meta = {"kid": key.thumbprint(), "alg": alg, "use": use, "validFrom": valid_from}
        write_private_jwk(out_dir / file, {**json.loads(key.export_private()), **meta})
        published.append({**public_jwk(json.loads(key.export_public())), **meta})
    country = args.party_id.split("-", 1)[0]
    out(
        {
            "party": {
                "id": args.party_id,
                "name": args.name or f"{args.party_id} liaison office",
                "country": country,
                "kind": args.kind,
                "inboundSubject": args.subject,
                # protocol.md, Key discovery: optional, true or false; absent means false
                **({"receiptBatches": True} if args.receipt_batches else {}),
            },
            "keys": published,
        }
    )


def cmd_sign_message(args):
    schemas = Schemas(args.schemas)
    key, kid, alg = load_private_key(args.key)
    body = read_json_file(args.body_file)
    sent = datetime.now(timezone.utc)
    envelope = {
        "id": str(uuid.uuid4()),
        "type": args.type,
        "schemaVersion": args.schema_version,
        "from": args.party_id,
        "to": args.to,
        "caseRef": args.case_ref,
        "sentAt": utc_text(sent),
        "expiresAt": utc_text(sent + timedelta(seconds=args.ttl_seconds)),
        "handling": {
            "classification": args.classification,
            "onwardDissemination": args.dissemination,
        },
        "body": body,
    }
    if args.in_reply_to:
        envelope["inReplyTo"] = args.in_reply_to
    # Validate before signing: a recipient rejects what the schemas reject (protocol.md step 4).
    schema_check(schemas, f"{SCHEMA_BASE}envelope/v1.json", envelope, "envelope_invalid")
    body_id = schemas.body_schema_id(args.type, args.schema_version)
    if body_id not in schemas.by_id:
        raise Refused("type_unknown", f"type {args.type} v{args.schema_version} is not supported")
    schema_check(schemas, body_id, body, "schema_invalid")
    compact = sign_compact(envelope, key, kid, alg, MESSAGE_TYP)
    data = compact.encode("ascii")
    if len(data) > MAX_MESSAGE_BYTES:
        raise Refused("payload_too_large", f"message exceeds {MAX_MESSAGE_BYTES} bytes")
    out({"jws": compact, "id": envelope["id"], "digest": sha256_hex(data)})


def cmd_sign_receipt(args):
    key, kid, alg = load_private_key(args.key)
    data = Path(args.jws_file).read_bytes()  # the exact bytes received, nothing stripped
    text = data.decode("ascii")
    if COMPACT.fullmatch(text) is None:
        raise Refused("malformed", "the received bytes are not a compact JWS")
    message = b64url_json(text.split(".")[1], "payload")
    if not isinstance(message, dict) or not isinstance(message.get("id"), str):
        raise Refused("malformed", "the received payload has no id")
    receipt = {
        "id": str(uuid.uuid4()),
        "type": "receipt",
        "schemaVersion": 1,
        "from": args.party_id,
        "to": message.get("from"),
        "sentAt": utc_text(datetime.now(timezone.utc)),
        "messageId": message["id"].lower(),
        "digest": {"alg": "sha-256", "value": sha256_hex(data)},
        "status": "accepted",
        "errors": [],
    }
    schema_check(Schemas(args.schemas), f"{SCHEMA_BASE}receipt/v1.json", receipt, "envelope_invalid")
    compact = sign_compact(receipt, key, kid, alg, RECEIPT_TYP)
    out({"jws": compact, "id": receipt["id"], "digest": sha256_hex(compact.encode("ascii"))})


def cmd_sign_receipt_batch(args):
    """protocol.md, Batch receipts, "Building one with any JOSE library"."""
    key, kid, alg = load_private_key(args.key)
    registry = load_registry(args.jwks)
    entries, sender = [], None
    for path in args.jws_file:
        data = Path(path).read_bytes()  # the exact bytes received, nothing stripped
        text = data.decode("ascii")
        if COMPACT.fullmatch(text) is None:
            raise Refused("malformed", f"{path}: the received bytes are not a compact JWS")
        message = b64url_json(text.split(".")[1], "payload")
        if not isinstance(message, dict) or not isinstance(message.get("id"), str):
            raise Refused("malformed", f"{path}: the received payload has no id")
        if sender is None:
            sender = message.get("from")
        elif message.get("from") != sender:
            raise Refused("request_invalid", "a batch receipt answers messages of one sender only")
        message_id = message["id"].lower()
        if any(e["messageId"] == message_id for e in entries):
            raise Refused("request_invalid", f"message {message_id} is named twice")
        digest = {"alg": "sha-256", "value": sha256_hex(data)}
        entries.append({"messageId": message_id, "digest": digest})
    if not 1 <= len(entries) <= MAX_BATCH_ENTRIES:
        raise Refused("request_invalid", f"a batch receipt holds 1 to {MAX_BATCH_ENTRIES} entries")
    # "A recipient MUST NOT send batch receipts to a party whose registered party document does
    # not say so" (protocol.md, Batch receipts, Who receives them).
    if sender not in registry or registry[sender]["party"].get("receiptBatches") is not True:
        raise Refused(
            "request_invalid",
            f"{sender}'s registered party document does not declare receiptBatches: true",
        )
    batch = {
        "id": str(uuid.uuid4()),
        "type": "receipt.batch",
        "schemaVersion": 1,
        "from": args.party_id,
        "to": sender,
        "sentAt": utc_text(datetime.now(timezone.utc)),
        "accepted": entries,
    }
    schema_check(
        Schemas(args.schemas), f"{SCHEMA_BASE}receipt-batch/v1.json", batch, "envelope_invalid"
    )
    compact = sign_compact(batch, key, kid, alg, RECEIPT_BATCH_TYP)
    data = compact.encode("ascii")
    if len(data) > MAX_BATCH_BYTES:
        raise Refused("payload_too_large", f"the batch receipt exceeds {MAX_BATCH_BYTES} bytes")
    out(
        {
            "jws": compact,
            "id": batch["id"],
            "digest": sha256_hex(data),
            "to": sender,
            "accepted": entries,
        }
    )


# --------------------------------------------------------------------------------------------
# verification, in the order of protocol.md "Verification order"


def verify(data, registry, self_id, sent, schemas, skew_ms, now, batches=False):
    """Steps 1-23, then R1-R3 (receipt), B1-B3 (batch receipt, only if `batches`) or M1-M6.

    B4 needs this party's log of batches: log_batch() does it, after this.
    """
    # 1. size
    if len(data) > MAX_MESSAGE_BYTES:
        raise Refused("payload_too_large", f"message exceeds {MAX_MESSAGE_BYTES} bytes")
    # 2. UTF-8
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("malformed", "the bytes are not UTF-8") from None
    # 3. compact serialisation
    if COMPACT.fullmatch(text) is None:
        raise Refused("malformed", "not a compact JWS (three base64url segments)")
    # 4. canonical base64url: re-encoding each decoded segment gives the same text
    for segment in text.split("."):
        try:
            canonical = base64url_encode(base64url_decode(segment))
        except Exception:
            canonical = None
        if canonical != segment:
            raise Refused("malformed", "a segment is not canonical base64url")
    h_seg, p_seg, _ = text.split(".")
    # 4-7. header and payload are base64url UTF-8 JSON objects
    header = b64url_json(h_seg, "protected header")
    payload = b64url_json(p_seg, "payload")
    if not isinstance(header, dict):
        raise Refused("malformed", "the protected header is not a JSON object")
    if not isinstance(payload, dict):
        raise Refused("malformed", "the payload is not a JSON object")
    # 8-11. header
    # A party that did not declare receiptBatches must never be sent a batch: refused like any
    # other typ it does not take.
    typs = (MESSAGE_TYP, RECEIPT_TYP) + ((RECEIPT_BATCH_TYP,) if batches else ())
    typ = typ_kind(header.get("typ"), typs)
    if typ is None:
        raise Refused("jws_header_invalid", "typ must be " + " or ".join(f'"{t}"' for t in typs))
    if header.get("alg") not in KEY_TYPES:
        raise Refused("jws_header_invalid", "alg must be one of EdDSA, ES256")
    kid = header.get("kid")
    if not isinstance(kid, str) or kid == "":
        raise Refused("jws_header_invalid", "kid is missing")
    if set(header) - {"alg", "kid", "typ"}:  # crit, b64, jku, jwk, x5c, cty, private names, ...
        raise Refused("jws_header_invalid", "the protected header must hold exactly alg, kid and typ")
    # 12-13. sender
    sender = payload.get("from")
    if not isinstance(sender, str):
        raise Refused("envelope_invalid", "from is missing")
    if sender not in registry:
        raise Refused("sender_unknown", "from is not a registered party")
    # 14-16. key and signature
    key = registry[sender]["keys"].get(kid)
    if key is None:
        raise Refused("key_unknown", "kid names no registered key of the sender")
    if header["alg"] != key["alg"]:
        raise Refused("jws_header_invalid", "alg does not match the key")
    token = jws.JWS()
    try:
        token.deserialize(text)
        token.verify(key["jwk"], alg=key["alg"])
    except Exception:
        raise Refused("signature_invalid", "signature does not verify with the registered key") from None
    # 17. payload schema
    schema = {
        MESSAGE_TYP: "envelope/v1.json",
        RECEIPT_TYP: "receipt/v1.json",
        RECEIPT_BATCH_TYP: "receipt-batch/v1.json",
    }[typ]
    schema_check(schemas, SCHEMA_BASE + schema, payload, "envelope_invalid")
    # 18. representable instants (no leap second)
    sent_at = timestamp_ms(payload["sentAt"])
    expires_at = timestamp_ms(payload["expiresAt"]) if typ == MESSAGE_TYP else 0
    if sent_at is None or expires_at is None:
        raise Refused("envelope_invalid", "a time is not representable (leap second?)")
    # 19-20. key validity at the claimed sentAt
    if key["revokedAt"] is not None and sent_at >= key["revokedAt"]:
        raise Refused("key_revoked", "the key was revoked before the claimed sentAt")
    if sent_at < key["validFrom"] or (key["validUntil"] is not None and sent_at >= key["validUntil"]):
        raise Refused("key_not_valid", "the key is not valid at the claimed sentAt")
    # 21. not from the future
    if sent_at > now + skew_ms:
        raise Refused("clock_skew", "sentAt is ahead of the receiver's clock beyond the tolerated skew")

    if typ == RECEIPT_BATCH_TYP:
        check_batch(payload, self_id, sender, sent)
    elif typ == RECEIPT_TYP:
        # R1-R3
        if payload["to"] != self_id:
            raise Refused("misaddressed", "receipt is not addressed to this party")
        # a null messageId is never matched, not even by digest (errors.md, message_unknown)
        match = [s for s in sent if s["id"] == payload["messageId"] and sender in s["to"]]
        if payload["messageId"] is None or not match:
            raise Refused("message_unknown", "no message with this id was sent to the receipt's sender")
        if payload["digest"]["value"] not in {s["digest"] for s in match}:
            raise Refused("digest_mismatch", "the receipt's digest is not the digest of the message sent")
    else:
        # M1-M6 (M7, de-duplication, needs the caller's message log)
        if payload["type"] == "receipt":
            raise Refused("envelope_invalid", "a receipt must use the receipt typ")
        if self_id not in payload["to"]:
            raise Refused("misaddressed", "message is not addressed to this party")
        if expires_at <= sent_at:
            raise Refused("envelope_invalid", "expiresAt is not after sentAt")
        if expires_at + skew_ms < now:
            raise Refused("expired", "the message expired before it was received")
        body_id = schemas.body_schema_id(payload["type"], payload["schemaVersion"])
        if body_id not in schemas.by_id:
            raise Refused(
                "type_unknown", f"type {payload['type']} v{payload['schemaVersion']} is not supported"
            )
        schema_check(schemas, body_id, payload["body"], "schema_invalid")
    return {"typ": typ, "payload": payload, "digest": sha256_hex(data), "kid": kid}


def check_batch(payload, self_id, sender, sent):
    """B1-B3 (protocol.md, Verification order): the batch is refused as a whole."""
    # B1
    if payload["to"] != self_id:
        raise Refused("misaddressed", "batch receipt is not addressed to this party")
    # B2: the second occurrence is the one named
    seen = set()
    for i, entry in enumerate(payload["accepted"]):
        if entry["messageId"] in seen:
            raise Refused("envelope_invalid", f"/accepted/{i}/messageId: message id occurs twice")
        seen.add(entry["messageId"])
    # B3: the first entry that fails decides
    for i, entry in enumerate(payload["accepted"]):
        match = [s for s in sent if s["id"] == entry["messageId"] and sender in s["to"]]
        if not match:
            raise Refused(
                "message_unknown",
                f"/accepted/{i}: no message with this id was sent to the batch's sender",
            )
        if entry["digest"]["value"] not in {s["digest"] for s in match}:
            raise Refused(
                "digest_mismatch",
                f"/accepted/{i}: the digest is not the digest of the message sent",
            )


def _write_atomically(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def log_batch(data, payload, log_dir):
    """B4, then log the batch once and close each entry's delivery (protocol.md, Batch receipts).

    `log_dir` is this party's log: batches/<id>.jws (each batch logged, its exact bytes) and
    deliveries.json ({message id: {"status": "delivered", "receiptId": batch id}} for each closed
    delivery; a message this party sent that is not in it is open). Returns what changed.
    """
    log_dir = Path(log_dir)
    (log_dir / "batches").mkdir(parents=True, exist_ok=True)
    logged_file = log_dir / "batches" / f"{payload['id']}.jws"
    if logged_file.exists():
        logged = logged_file.read_bytes()
        # B4: the same bytes, or the same header and payload under another signature encoding
        # (both signatures verified: the logged one when it was logged, this one just now)
        if logged == data or logged.rsplit(b".", 1)[0] == data.rsplit(b".", 1)[0]:
            return {"duplicate": True, "closed": [], "alreadyClosed": []}
        raise Refused("duplicate_conflict", "another batch receipt was logged with this id")
    deliveries_file = log_dir / "deliveries.json"
    deliveries = json.loads(deliveries_file.read_text("utf-8")) if deliveries_file.exists() else {}
    closed, already = [], []
    for entry in payload["accepted"]:
        message_id = entry["messageId"]
        if message_id in deliveries:  # closed already (a receipt or another batch): stays so
            already.append(message_id)
            continue
        deliveries[message_id] = {"status": "delivered", "receiptId": payload["id"]}
        closed.append(message_id)
    # What it closes first, then the batch: a crash between the two leaves the batch unlogged,
    # and its redelivery is applied again, finding those deliveries closed already.
    _write_atomically(deliveries_file, json.dumps(deliveries, indent=2, sort_keys=True) + "\n")
    _write_atomically(logged_file, data.decode("ascii"))
    return {"duplicate": False, "closed": closed, "alreadyClosed": already}


# --------------------------------------------------------------------------------------------
# personal data (protocol.md, Personal data: The profile, Decrypting)


def _undecryptable(detail):
    return Refused("personal_data_undecryptable", detail)


def check_personal_data_profile(pd):
    """The profile, exactly; returns the recipient entries. personal_data_undecryptable if not."""
    members = {"protected", "recipients", "iv", "ciphertext", "tag"}
    if not isinstance(pd, dict) or set(pd) != members:
        raise _undecryptable("the JWE must hold exactly protected, recipients, iv, ciphertext, tag")
    protected = canonical_b64(pd["protected"])
    if protected is None:
        raise _undecryptable("protected is not canonical base64url")
    try:
        header = strict_json_object(protected, "protected header")
    except ValueError as e:
        raise _undecryptable(str(e)) from None
    if header != PD_PROTECTED:
        raise _undecryptable('the protected header must be exactly {"enc":"A256GCM","cty":...}')
    for name, size in (("iv", 12), ("tag", 16), ("ciphertext", None)):
        raw = canonical_b64(pd[name])
        if raw is None or (size is not None and len(raw) != size):
            raise _undecryptable(f"{name} is not canonical base64url of the right length")
    recipients = pd["recipients"]
    if not isinstance(recipients, list) or not 1 <= len(recipients) <= PD_MAX_RECIPIENTS:
        raise _undecryptable(f"recipients must hold 1 to {PD_MAX_RECIPIENTS} entries")
    kids = set()
    for n, entry in enumerate(recipients):
        where = f"recipient entry {n}"
        if not isinstance(entry, dict) or set(entry) != {"header", "encrypted_key"}:
            raise _undecryptable(f"{where} must hold exactly header and encrypted_key")
        h = entry["header"]
        if not isinstance(h, dict) or set(h) != {"alg", "kid", "epk"} or h["alg"] != PD_ALG:
            raise _undecryptable(f"{where}: the header must be exactly alg {PD_ALG}, kid, epk")
        kid = h["kid"]
        if not isinstance(kid, str) or len(kid) != 43 or canonical_b64(kid) is None:
            raise _undecryptable(f"{where}: kid is not an RFC 7638 SHA-256 thumbprint")
        if kid in kids:
            raise _undecryptable(f"{where}: kid repeated")
        kids.add(kid)
        epk = h["epk"]
        if (
            not isinstance(epk, dict)
            or set(epk) != {"kty", "crv", "x"}
            or (epk["kty"], epk["crv"]) != ("OKP", "X25519")
        ):
            raise _undecryptable(f"{where}: epk must be exactly kty OKP, crv X25519 and x")
        x = canonical_b64(epk["x"])
        if x is None or len(x) != 32:
            raise _undecryptable(f"{where}: epk.x is not a 32-byte X25519 public key")
        wrapped = canonical_b64(entry["encrypted_key"])
        if wrapped is None or len(wrapped) != 40:
            raise _undecryptable(f"{where}: encrypted_key is not 40 bytes of canonical base64url")
    return recipients


def open_personal_data(pd, our_keys, schemas):
    """Decrypts body.personalData with our entry only; the plaintext, validated."""
    recipients = check_personal_data_profile(pd)
    mine = [r for r in recipients if r["header"]["kid"] in our_keys]
    if not mine:
        raise Refused(
            "personal_data_not_for_us",
            "no recipient entry of the personal data names one of our encryption keys",
        )
    entry = mine[0]
    # Our entry alone: the others are wrapped for other parties' keys.
    token = jwe.JWE()
    token.allowed_algs = [PD_ALG, PD_ENC]
    try:
        token.deserialize(json.dumps({**pd, "recipients": [entry]}))
        token.decrypt(our_keys[entry["header"]["kid"]])
        plaintext = token.plaintext
    except Exception:
        raise _undecryptable("the personal data does not decrypt with our encryption key") from None
    try:
        content = strict_json_object(plaintext, "personal data")
    except ValueError as e:
        raise _undecryptable(str(e)) from None
    problems = schemas.errors(f"{SCHEMA_BASE}personal-data/v1.json", content)
    if problems:
        pointers = ", ".join(f"/personalData{p} ({why})" for p, why in problems[:8])
        raise Refused("personal_data_invalid", f"does not match personal-data/v1.json: {pointers}")
    return content


def load_sent(path):
    data = Path(path).read_bytes()
    payload = b64url_json(data.decode("ascii").split(".")[1], "payload of a sent message")
    return {"id": payload["id"], "to": payload["to"], "digest": sha256_hex(data)}


def cmd_verify(args):
    registry = load_registry(args.jwks)
    sent = [load_sent(p) for p in args.sent or []]
    data = sys.stdin.buffer.read()  # the exact bytes: nothing stripped
    schemas = Schemas(args.schemas)
    result = verify(
        data,
        registry,
        args.self_id,
        sent,
        schemas,
        args.skew_seconds * 1000,
        now_ms() if args.now is None else timestamp_ms(args.now),
        batches=args.receipt_batches,
    )
    if result["typ"] == RECEIPT_BATCH_TYP and args.batch_log is not None:
        result.update(log_batch(data, result["payload"], args.batch_log))
    body = result["payload"].get("body")
    if result["typ"] == MESSAGE_TYP and isinstance(body, dict) and "personalData" in body:
        # Only after the message verified: its signature is what tells who sent the data.
        our_keys = dict(load_encryption_key(path) for path in args.enc_key or [])
        result["personalData"] = open_personal_data(body["personalData"], our_keys, schemas)
    out(result)


# --------------------------------------------------------------------------------------------
# handover record (protocol.md, Handover record: Verifying offline)


def _record_invalid(detail):
    return Refused("handover_record_invalid", detail)


def verify_handover_record(record, registry, schemas, now, countersigned=True):
    """Checks a record in the order of "Verifying offline"; (payload, signers) or Refused."""
    # 1. shape
    if not isinstance(record, dict) or set(record) != {"payload", "signatures"}:
        raise _record_invalid("the record must hold exactly payload and signatures")
    sigs = record["signatures"]
    if not isinstance(sigs, list) or not 1 <= len(sigs) <= 2:
        raise _record_invalid("the record must hold 1 or 2 signatures")
    for n, sig in enumerate(sigs, 1):
        if not isinstance(sig, dict) or set(sig) != {"protected", "signature"}:
            raise _record_invalid(f"signature {n} must hold exactly protected and signature")
    segments = [record["payload"]] + [sig[m] for sig in sigs for m in ("protected", "signature")]
    if any(canonical_b64(seg) is None for seg in segments):
        raise _record_invalid("a segment is not canonical base64url")
    # 2. payload
    try:
        payload = strict_json_object(canonical_b64(record["payload"]), "payload")
    except ValueError as e:
        raise _record_invalid(str(e)) from None
    # 3. each signature on its own
    # Signing keys only: an encryption key verifies nothing.
    keys = {
        kid: (party_id, key)
        for party_id, entry in registry.items()
        for kid, key in entry["keys"].items()
    }
    signers = []
    for n, sig in enumerate(sigs, 1):
        try:
            header = strict_json_object(canonical_b64(sig["protected"]), "protected header")
        except ValueError as e:
            raise _record_invalid(f"signature {n}: {e}") from None
        if (
            set(header) != {"alg", "kid", "typ"}
            or typ_kind(header["typ"], (HANDOVER_RECORD_TYP,)) is None
            or header["alg"] not in KEY_TYPES
        ):
            raise _record_invalid(
                f"signature {n}: the protected header must be exactly alg (EdDSA or ES256), "
                f'kid and typ "{HANDOVER_RECORD_TYP}"'
            )
        if not isinstance(header["kid"], str) or header["kid"] not in keys:
            raise _record_invalid(f"signature {n}: kid names no registered signing key")
        party_id, key = keys[header["kid"]]
        if key["alg"] != header["alg"]:
            raise _record_invalid(f"signature {n}: alg does not match the key")
        if key["revokedAt"] is not None and now >= key["revokedAt"]:
            raise _record_invalid(f"signature {n}: the key is revoked")
        if now < key["validFrom"] or (key["validUntil"] is not None and now >= key["validUntil"]):
            raise _record_invalid(f"signature {n}: the key is not valid now")
        if party_id in [s["party"] for s in signers]:
            raise _record_invalid(f"signature {n}: {party_id} signed twice")
        # ONE signature, as a flattened JWS: jwcrypto's verify() of the general form succeeds as
        # soon as any one signature verifies.
        one = jws.JWS()
        try:
            one.deserialize(json.dumps({"payload": record["payload"], **sig}))
            one.verify(key["jwk"], alg=header["alg"])
        except Exception:
            detail = f"signature {n} does not verify with the key its kid names"
            raise _record_invalid(detail) from None
        signers.append({"party": party_id, "kid": header["kid"], "alg": header["alg"]})
    # 4. what we require of the content
    if countersigned and len(signers) != 2:
        raise Refused("handover_record_incomplete", "the record is not countersigned")
    named = [payload.get("handedOverBy"), payload.get("receivedBy")][: len(signers)]
    if [s["party"] for s in signers] != named:
        raise _record_invalid("the signers are not handedOverBy, then receivedBy")
    problems = schemas.errors(f"{SCHEMA_BASE}handover-record/v1.json", payload)
    if problems:
        pointers = ", ".join(f"{p or '/'} ({why})" for p, why in problems[:8])
        raise _record_invalid(f"does not match handover-record/v1.json: {pointers}")
    return payload, signers


def cmd_verify_handover_record(args):
    registry = load_registry(args.jwks)
    record = read_json_file(args.record)
    now = now_ms() if args.now is None else party_doc_time_ms(args.now)
    if now is None:
        raise Refused("request_invalid", "--now is not an RFC 3339 date-time with a zone")
    try:
        payload, signers = verify_handover_record(
            record, registry, Schemas(args.schemas), now, countersigned=not args.signed_once
        )
    except Refused as e:
        out({"ok": False, "error": {"code": e.code, "detail": e.detail}})
        sys.stderr.write(f"python_partner: {e.code}: {e.detail}\n")
        return 1
    out({"ok": True, "payload": payload, "signers": signers})
    return 0


# --------------------------------------------------------------------------------------------


def main(argv):
    parser = argparse.ArgumentParser(prog="python_partner", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("keygen", help="new signing key and party document")
    p.add_argument("--party-id", required=True)
    p.add_argument("--subject", required=True, help="this party's inbound NATS subject")
    p.add_argument("--out", required=True, help="directory for key.json")
    p.add_argument("--name", help="party.name")
    p.add_argument("--kind", default="anti-trafficking-police", help="party.kind")
    p.add_argument("--alg", choices=sorted(KEY_TYPES), default="EdDSA")
    p.add_argument(
        "--receipt-batches", action="store_true", help='declare "receiptBatches": true'
    )
    p.set_defaults(run=cmd_keygen)

    p = sub.add_parser("sign-message", help="build and sign an envelope")
    p.add_argument("--key", required=True)
    p.add_argument("--party-id", required=True)
    p.add_argument("--to", required=True, action="append")
    p.add_argument("--case-ref", required=True)
    p.add_argument("--type", required=True)
    p.add_argument("--schema-version", type=int, default=1)
    p.add_argument("--body-file", required=True)
    p.add_argument("--in-reply-to")
    p.add_argument("--classification", default="restricted")
    p.add_argument("--dissemination", default="forbidden")
    p.add_argument("--ttl-seconds", type=int, default=DEFAULT_TTL_SECONDS)
    p.add_argument("--schemas", default=str(SCHEMAS_DIR))
    p.set_defaults(run=cmd_sign_message)

    p = sub.add_parser("verify", help="verify a JWS read on stdin")
    p.add_argument("--jwks", required=True, action="append", help="a registered party document")
    p.add_argument("--self", dest="self_id", required=True, help="this party's id")
    p.add_argument("--sent", action="append", help="a JWS file this party sent (for receipts)")
    p.add_argument("--skew-seconds", type=int, default=DEFAULT_SKEW_SECONDS)
    p.add_argument("--now", help="the receiver's clock, RFC 3339 UTC (default: the real clock)")
    p.add_argument(
        "--enc-key", action="append", help="one of our X25519 private keys (enc-key.json)"
    )
    p.add_argument(
        "--receipt-batches",
        action="store_true",
        help="this party declared receiptBatches: verify batch receipts too (B1-B3)",
    )
    p.add_argument(
        "--batch-log",
        help="this party's log of batches and deliveries (B4; a new batch closes deliveries)",
    )
    p.add_argument("--schemas", default=str(SCHEMAS_DIR))
    p.set_defaults(run=cmd_verify)

    p = sub.add_parser("sign-receipt", help="sign an accepted receipt for received bytes")
    p.add_argument("--key", required=True)
    p.add_argument("--party-id", required=True)
    p.add_argument("--jws-file", required=True, help="the received message, exact bytes")
    p.add_argument("--schemas", default=str(SCHEMAS_DIR))
    p.set_defaults(run=cmd_sign_receipt)

    p = sub.add_parser("sign-receipt-batch", help="sign one batch receipt for received bytes")
    p.add_argument("--key", required=True)
    p.add_argument("--party-id", required=True)
    p.add_argument(
        "--jwks", required=True, action="append", help="the senders' registered party documents"
    )
    p.add_argument(
        "--jws-file", required=True, action="append", help="a received message, exact bytes"
    )
    p.add_argument("--schemas", default=str(SCHEMAS_DIR))
    p.set_defaults(run=cmd_sign_receipt_batch)

    p = sub.add_parser("verify-handover-record", help="verify a handover record offline")
    p.add_argument("--record", required=True, help="the record (General JSON JWS) file")
    p.add_argument("--jwks", required=True, action="append", help="a signer's party document")
    p.add_argument("--signed-once", action="store_true", help="a record not countersigned yet")
    p.add_argument("--now", help="the instant the verdict is about, RFC 3339 (default: now)")
    p.add_argument("--schemas", default=str(SCHEMAS_DIR))
    p.set_defaults(run=cmd_verify_handover_record)

    args = parser.parse_args(argv)
    try:
        if args.run(args):
            return 1
    except Refused as e:
        out({"error": {"code": e.code, "detail": e.detail}})
        sys.stderr.write(f"python_partner: {e.code}: {e.detail}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
