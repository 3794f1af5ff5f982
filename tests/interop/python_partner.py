#!/usr/bin/python3
"""A liaison partner written from docs/protocol.md, docs/errors.md and schemas/ only.

It exists to prove that a partner agency can integrate with a liaison gateway in another
language, with another JOSE library (jwcrypto), from the published contract alone. It uses only
the Python standard library and jwcrypto (Debian: apt-get install python3-jwcrypto) and must be
run with Debian's /usr/bin/python3.

Every sub-command reads JSON (or a JWS) and writes one JSON object on stdout:

  keygen        --party-id ID --subject SUBJECT --out DIR [--name N] [--kind K] [--alg EdDSA|ES256]
                new signing key; private JWK to DIR/key.json (mode 0600); prints the party document
  sign-message  --key FILE --party-id ID --to ID [--to ID ...] --case-ref REF --type TYPE
                --body-file FILE [--schema-version N] [--in-reply-to ID]
                [--classification C] [--dissemination D] [--ttl-seconds S]
                prints {"jws", "id", "digest"}
  verify        --jwks PARTY_DOCUMENT [--jwks ...] --self ID [--sent JWS_FILE ...] [--skew-seconds S]
                reads a compact JWS on stdin (the exact NATS message data); prints
                {"typ", "payload", "digest", "kid"}; on failure prints {"error": {"code", "detail"}}
                and exits 1. --sent names the JWS files this party sent: a receipt must answer one.
  sign-receipt  --key FILE --party-id ID --jws-file RECEIVED_JWS_FILE
                prints {"jws", "id", "digest"} of an `accepted` receipt for those exact bytes.
                Run `verify` on the bytes first: an accepted receipt states that they passed.

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
    from jwcrypto import jwk, jws
    from jwcrypto.common import base64url_decode, base64url_encode
except ImportError:  # pragma: no cover - reported to the caller
    sys.stderr.write(
        "python_partner: jwcrypto is missing: apt-get install python3-jwcrypto "
        "(and run this script with /usr/bin/python3)\n"
    )
    sys.exit(3)

MESSAGE_TYP = "liaison-message+jws"  # protocol.md, JWS profile
RECEIPT_TYP = "liaison-receipt+jws"
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


def typ_kind(typ):
    """protocol.md, JWS profile: `typ` compared case-insensitively, `application/` optional."""
    if not isinstance(typ, str):
        return None
    t = typ.lower()
    t = t[len("application/") :] if t.startswith("application/") else t
    return t if t in (MESSAGE_TYP, RECEIPT_TYP) else None


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
        if isinstance(v, dict):
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


def load_party_document(path):
    """Checks a party document as protocol.md / errors.md (request_invalid) describe."""
    doc = read_json_file(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("party"), dict):
        raise Refused("request_invalid", f"{path}: no `party` member")
    party = doc["party"]
    for name in ("id", "name", "country", "kind", "inboundSubject"):
        if not isinstance(party.get(name), str) or party[name] == "":
            raise Refused("request_invalid", f"{path}: party.{name} missing or empty")
    if PARTY_ID.fullmatch(party["id"]) is None:
        raise Refused("request_invalid", f"{path}: party.id is not a party id")
    keys = doc.get("keys")
    if not isinstance(keys, list) or not 1 <= len(keys) <= 64:
        raise Refused("request_invalid", f"{path}: `keys` must hold 1 to 64 keys")
    registered = {}
    for i, k in enumerate(keys):
        where = f"{path}: keys[{i}]"
        if not isinstance(k, dict):
            raise Refused("request_invalid", f"{where} is not an object")
        if k.get("use") == "enc":
            continue  # reserved for later encryption keys: skipped, not registered
        if "d" in k:
            raise Refused("request_invalid", f"{where} contains a private key (d)")
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
        valid_from = party_doc_time_ms(k.get("validFrom"))
        if valid_from is None:
            raise Refused("request_invalid", f"{where}: validFrom missing or unparsable")
        bounds = {}
        for name in ("validUntil", "revokedAt"):
            if name in k:
                bounds[name] = party_doc_time_ms(k[name])
                if bounds[name] is None:
                    raise Refused("request_invalid", f"{where}: {name} unparsable")
        registered[k["kid"]] = {
            "jwk": key,
            "alg": k["alg"],
            "validFrom": valid_from,
            "validUntil": bounds.get("validUntil"),
            "revokedAt": bounds.get("revokedAt"),
        }
    if not registered:
        raise Refused("request_invalid", f"{path}: keys holds no signing key")
    return party, registered


# --------------------------------------------------------------------------------------------
# keys and signing


def load_private_key(path):
    st = os.stat(path)
    if st.st_mode & 0o077:
        raise Refused("key_store_invalid", f"{path} is readable by group or others")
    members = read_json_file(path)
    if "d" not in members:
        raise Refused("key_store_invalid", f"{path} holds no private key")
    key = jwk.JWK(**{n: members[n] for n in ("kty", "crv", "x", "y", "d") if n in members})
    alg = alg_of_key(members)
    kid = key.thumbprint()
    if members.get("kid", kid) != kid:
        raise Refused("key_store_invalid", f"{path}: kid is not the key's thumbprint")
    return key, kid, alg


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
    kty, crv = KEY_TYPES[args.alg]
    key = jwk.JWK.generate(kty=kty, crv=crv)
    kid = key.thumbprint()
    valid_from = utc_text(datetime.now(timezone.utc))
    private = json.loads(key.export_private())
    private.update({"kid": kid, "alg": args.alg, "use": "sig", "validFrom": valid_from})
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = out_dir / "key.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(private, f, indent=2)
        f.write("\n")
    public = public_jwk(json.loads(key.export_public()))
    public.update({"kid": kid, "alg": args.alg, "use": "sig", "validFrom": valid_from})
    country = args.party_id.split("-", 1)[0]
    out(
        {
            "party": {
                "id": args.party_id,
                "name": args.name or f"{args.party_id} liaison office",
                "country": country,
                "kind": args.kind,
                "inboundSubject": args.subject,
            },
            "keys": [public],
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


# --------------------------------------------------------------------------------------------
# verification, in the order of protocol.md "Verification order"


def verify(data, registry, self_id, sent, schemas, skew_ms, now):
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
    typ = typ_kind(header.get("typ"))
    if typ is None:
        raise Refused("jws_header_invalid", f'typ must be "{MESSAGE_TYP}" or "{RECEIPT_TYP}"')
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
    schema = "envelope/v1.json" if typ == MESSAGE_TYP else "receipt/v1.json"
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

    if typ == RECEIPT_TYP:
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


def load_sent(path):
    data = Path(path).read_bytes()
    payload = b64url_json(data.decode("ascii").split(".")[1], "payload of a sent message")
    return {"id": payload["id"], "to": payload["to"], "digest": sha256_hex(data)}


def cmd_verify(args):
    registry = {}
    for path in args.jwks:
        party, keys = load_party_document(path)
        registry[party["id"]] = {"party": party, "keys": keys}
    sent = [load_sent(p) for p in args.sent or []]
    data = sys.stdin.buffer.read()  # the exact bytes: nothing stripped
    result = verify(
        data,
        registry,
        args.self_id,
        sent,
        Schemas(args.schemas),
        args.skew_seconds * 1000,
        now_ms() if args.now is None else timestamp_ms(args.now),
    )
    out(result)


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
    p.add_argument("--schemas", default=str(SCHEMAS_DIR))
    p.set_defaults(run=cmd_verify)

    p = sub.add_parser("sign-receipt", help="sign an accepted receipt for received bytes")
    p.add_argument("--key", required=True)
    p.add_argument("--party-id", required=True)
    p.add_argument("--jws-file", required=True, help="the received message, exact bytes")
    p.add_argument("--schemas", default=str(SCHEMAS_DIR))
    p.set_defaults(run=cmd_sign_receipt)

    args = parser.parse_args(argv)
    try:
        args.run(args)
    except Refused as e:
        out({"error": {"code": e.code, "detail": e.detail}})
        sys.stderr.write(f"python_partner: {e.code}: {e.detail}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
