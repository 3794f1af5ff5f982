/**
 * Interoperability: a partner written in Python with jwcrypto (tests/interop/python_partner.py),
 * from docs/ and schemas/ alone, exchanges messages and receipts with a real gateway over a real
 * nats-server. The partner (TH-RTP-ATPD) owns a JetStream stream on its inbound subject, as
 * protocol.md asks of a partner; the test only moves bytes between NATS and the Python CLI.
 * It publishes an X25519 encryption key, decrypts the personal data of a victim.identified the
 * gateway encrypted to it, and verifies a handover record's two signatures offline, each alone.
 * A second Python partner (LA-MPS-BOKEO) declares `receiptBatches: true`: it answers the
 * gateway's messages with one batch receipt it signs, and verifies and applies the gateway's
 * batch receipts for its own messages (protocol.md, Batch receipts).
 *
 * Needs Debian's /usr/bin/python3 with python3-jwcrypto (scripts/ensure-system-deps.sh python).
 */
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { exportJWK, FlattenedSign } from "jose";
import {
  AckPolicy,
  type Consumer,
  connect,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  nanos,
} from "nats";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  countersignHandoverRecord,
  type HandoverRecord,
  signHandoverRecord,
} from "../../src/protocol/handover-record.ts";
import { call, startNode, type TestNode, uniqueTag, waitFor } from "../helpers/network.ts";
import { makeParty } from "../helpers/protocol-fixtures.ts";

const PYTHON = "/usr/bin/python3";
const PARTNER_SCRIPT = fileURLToPath(new URL("../interop/python_partner.py", import.meta.url));
const SEED_01 = fileURLToPath(
  new URL("../../seeds/messages/01-case-notice-hekou.json", import.meta.url),
);
const EXAMPLE_01 = fileURLToPath(
  new URL("../../docs/examples/messages/01-victim.identified.json", import.meta.url),
);
const EXAMPLE_09 = fileURLToPath(
  new URL("../../docs/examples/messages/09-handover.completed.json", import.meta.url),
);
const HEKOU = "CN-MPS-HEKOU";
const PARTNER = "TH-RTP-ATPD";
const LAOCAI = "VN-BGC-LAOCAI";
const MESSAGE_TYP = "liaison-message+jws";
const RECEIPT_TYP = "liaison-receipt+jws";

interface PyResult {
  code: number | null;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

/** Runs the Python partner; `stdin` is written as is (the exact bytes of a JWS). */
function py(args: string[], stdin?: Uint8Array): Promise<PyResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [PARTNER_SCRIPT, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => {
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(stdout) as Record<string, unknown>;
      } catch {
        // left empty: the assertions show stdout and stderr
      }
      resolve({ code, stdout, stderr, json });
    });
    child.stdin.end(stdin === undefined ? undefined : Buffer.from(stdin));
  });
}

/** Like py(), but the command must succeed. */
async function pyOk(args: string[], stdin?: Uint8Array): Promise<Record<string, unknown>> {
  const r = await py(args, stdin);
  if (r.code !== 0) {
    throw new Error(
      `python_partner ${args[0]} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
    );
  }
  return r.json;
}

interface WireMessage {
  data: Uint8Array;
  typ: unknown;
  payload: Record<string, unknown>;
}

/** Routing only (which JWS is which); the Python partner does the verifying. */
function peek(data: Uint8Array): WireMessage {
  const [h = "", p = ""] = new TextDecoder().decode(data).split(".");
  const header = JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as { typ?: unknown };
  const payload = JSON.parse(Buffer.from(p, "base64url").toString("utf8")) as Record<
    string,
    unknown
  >;
  return { data, typ: header.typ, payload };
}

let node: TestNode;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let partnerInbox: Consumer;
let partnerStream: string | undefined;
let work: string;
let keyFile: string;
let encKeyFile: string;
let partnerDoc: string;
let gatewayDoc: string;
const inbox: WireMessage[] = [];

/** The first message on the partner's stream that `match`es (acknowledged as it is read). */
async function takeFromPartnerInbox(
  what: string,
  match: (m: WireMessage) => boolean,
  timeoutMs = 15_000,
): Promise<WireMessage> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const i = inbox.findIndex(match);
    if (i >= 0) return inbox.splice(i, 1)[0] as WireMessage;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what} on the partner inbox`);
    const m = await partnerInbox.next({ expires: 1000 });
    if (m === null) continue;
    inbox.push(peek(m.data));
    m.ack();
  }
}

beforeAll(async () => {
  const check = spawnSync(PYTHON, ["-c", "import jwcrypto"], { encoding: "utf8" });
  if (check.status !== 0) {
    throw new Error(
      `${PYTHON} cannot import jwcrypto (${check.error?.message ?? check.stderr.trim()}): ` +
        "install Debian's package as root: apt-get install python3-jwcrypto " +
        "(or run: bash scripts/ensure-system-deps.sh python)",
    );
  }

  const natsUrl = inject("natsUrl");
  const tag = uniqueTag();
  work = mkdtempSync(join(tmpdir(), "liaison-interop-python-"));
  node = await startNode(natsUrl, tag, { partyId: HEKOU });
  nc = await connect({ servers: natsUrl });
  js = nc.jetstream();
  jsm = await nc.jetstreamManager();

  // The partner's key and party document, made by the Python side.
  const subject = `test.${tag}.inbox.${PARTNER}`;
  const doc = await pyOk([
    "keygen",
    "--party-id",
    PARTNER,
    "--subject",
    subject,
    "--out",
    join(work, "partner"),
  ]);
  keyFile = join(work, "partner", "key.json");
  encKeyFile = join(work, "partner", "enc-key.json");
  partnerDoc = join(work, "partner.jwks.json");
  writeFileSync(partnerDoc, JSON.stringify(doc));

  // The partner's inbound stream (protocol.md, "Sending a message the gateway accepts", step 3).
  partnerStream = `T_${tag}_${PARTNER.replaceAll("-", "_")}`;
  await jsm.streams.add({
    name: partnerStream,
    subjects: [subject],
    duplicate_window: nanos(10 * 60_000),
  });
  await jsm.consumers.add(partnerStream, {
    durable_name: "partner",
    ack_policy: AckPolicy.Explicit,
  });
  partnerInbox = await js.consumers.get(partnerStream, "partner");

  // Registration both ways: the gateway registers the partner's document, the partner keeps
  // the gateway's published one.
  const registered = await call(node, "/v1/partners", { method: "POST", json: doc, asAdmin: true });
  expect(registered.status, JSON.stringify(registered.body)).toBe(201);
  const res = await fetch(`${node.gateway.url}/.well-known/jwks.json`);
  expect(res.status).toBe(200);
  gatewayDoc = join(work, "gateway.jwks.json");
  writeFileSync(gatewayDoc, await res.text());
});

afterAll(async () => {
  if (partnerStream !== undefined) await jsm?.streams.delete(partnerStream).catch(() => {});
  await nc?.drain();
  await node?.gateway.stop();
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
});

const verify = (data: Uint8Array, ...extra: string[]) =>
  py(["verify", "--jwks", gatewayDoc, "--self", PARTNER, ...extra], data);

let gatewayMessage: { id: string; wire: WireMessage } | undefined;

/** A case notice the gateway signed and published to the partner (once per file). */
async function messageFromGateway(): Promise<{ id: string; wire: WireMessage }> {
  if (gatewayMessage !== undefined) return gatewayMessage;
  const seed = JSON.parse(readFileSync(SEED_01, "utf8")) as { body: unknown };
  const res = await call(node, "/v1/messages", {
    method: "POST",
    json: { type: "case.notice", to: PARTNER, caseRef: "CN-HEKOU-2026-0042", body: seed.body },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const id = res.body.id as string;
  const wire = await takeFromPartnerInbox(
    `message ${id}`,
    (m) => m.typ === MESSAGE_TYP && m.payload.id === id,
  );
  gatewayMessage = { id, wire };
  return gatewayMessage;
}

describe("a Python (jwcrypto) partner and a gateway", () => {
  it("Python → gateway: the gateway logs the message and its receipt verifies in Python", async () => {
    const seed = JSON.parse(readFileSync(SEED_01, "utf8")) as { body: unknown };
    const bodyFile = join(work, "body-01.json");
    writeFileSync(bodyFile, JSON.stringify(seed.body));
    const signed = await pyOk([
      "sign-message",
      "--key",
      keyFile,
      "--party-id",
      PARTNER,
      "--to",
      HEKOU,
      "--case-ref",
      "CN-HEKOU-2026-0042",
      "--type",
      "case.notice",
      "--body-file",
      bodyFile,
    ]);
    const jws = signed.jws as string;
    const id = signed.id as string;
    const digest = signed.digest as string;
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const sentFile = join(work, `sent-${id}.jws`);
    writeFileSync(sentFile, jws);

    const ack = await js.publish(
      node.gateway.config.inboundSubject,
      new TextEncoder().encode(jws),
      {
        msgID: id,
      },
    );
    expect(ack.duplicate).toBe(false);

    const logged = await waitFor(`message ${id} logged at the gateway`, async () => {
      const r = await call(node, `/v1/messages/${id}`);
      return r.status === 200 ? r.body : undefined;
    });
    expect(logged).toMatchObject({ id, direction: "inbound", from: PARTNER, status: "accepted" });
    expect(logged.jws).toBe(jws);
    expect(logged.digest).toBe(digest);

    const receipt = await takeFromPartnerInbox(
      `receipt for ${id}`,
      (m) => m.typ === RECEIPT_TYP && m.payload.messageId === id,
    );
    const verified = await verify(receipt.data, "--sent", sentFile);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    expect(verified.json.typ).toBe(RECEIPT_TYP);
    expect(verified.json.payload).toMatchObject({
      type: "receipt",
      from: HEKOU,
      to: PARTNER,
      messageId: id,
      status: "accepted",
      errors: [],
      digest: { alg: "sha-256", value: digest },
    });
  });

  it("gateway → Python: Python verifies the message and its signed receipt closes the delivery", async () => {
    const { id, wire } = await messageFromGateway();
    const verified = await verify(wire.data);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    expect(verified.json.typ).toBe(MESSAGE_TYP);
    expect(verified.json.payload).toMatchObject({
      id,
      type: "case.notice",
      from: HEKOU,
      to: [PARTNER],
    });

    const receivedFile = join(work, `received-${id}.jws`);
    writeFileSync(receivedFile, wire.data);
    const receipt = await pyOk([
      "sign-receipt",
      "--key",
      keyFile,
      "--party-id",
      PARTNER,
      "--jws-file",
      receivedFile,
    ]);
    const receiptJws = receipt.jws as string;
    await js.publish(node.gateway.config.inboundSubject, new TextEncoder().encode(receiptJws), {
      msgID: receipt.id as string,
    });

    const done = await waitFor(`message ${id} delivered`, async () => {
      const r = await call(node, `/v1/messages/${id}`);
      return r.body.status === "delivered" ? r.body : undefined;
    });
    const receipts = done.receipts as Array<Record<string, unknown>>;
    expect(receipts).toHaveLength(1);
    expect(receipts[0]).toMatchObject({ status: "accepted", jws: receiptJws });
  });

  it("Python refuses a gateway message whose signature was changed, or that is not for it", async () => {
    const { wire } = await messageFromGateway();
    const text = new TextDecoder().decode(wire.data);
    const [h, p, s = ""] = text.split(".");
    // A character in the middle: the last one may only carry padding bits.
    const i = Math.floor(s.length / 2);
    const tampered = `${h}.${p}.${s.slice(0, i)}${s[i] === "A" ? "B" : "A"}${s.slice(i + 1)}`;
    const refused = await verify(new TextEncoder().encode(tampered));
    expect(refused.code).toBe(1);
    expect(refused.json).toMatchObject({ error: { code: "signature_invalid" } });
    expect(refused.stderr).toContain("signature_invalid");

    // The same intact bytes, for a party they are not addressed to, or with a trailing newline.
    const misaddressed = await py(
      ["verify", "--jwks", gatewayDoc, "--self", "VN-BGC-LAOCAI"],
      wire.data,
    );
    expect(misaddressed.json).toMatchObject({ error: { code: "misaddressed" } });
    const newline = await verify(new TextEncoder().encode(`${text}\n`));
    expect(newline.json).toMatchObject({ error: { code: "malformed" } });
  });
});

interface LocalSubmit {
  type: string;
  caseRef: string;
  handling: unknown;
  body: Record<string, unknown>;
  personalData: { names: { given: string } } & Record<string, unknown>;
}

describe("a Python (jwcrypto) partner: personal data and the handover record", () => {
  it("gateway → Python: the partner decrypts the victim's personal data with its X25519 key", async () => {
    // The party document the partner published carries its encryption key (Key discovery).
    const published = JSON.parse(readFileSync(partnerDoc, "utf8")) as {
      keys: Array<Record<string, unknown>>;
    };
    const encKey = published.keys.find((k) => k.use === "enc");
    expect(encKey).toMatchObject({ kty: "OKP", crv: "X25519", alg: "ECDH-ES+A256KW" });

    // docs/examples/messages/01 as the gateway's local API takes it: personal data in clear,
    // addressed to the Python partner, which becomes the case's other party.
    const example = JSON.parse(readFileSync(EXAMPLE_01, "utf8")) as LocalSubmit;
    const res = await call(node, "/v1/messages", {
      method: "POST",
      json: {
        type: example.type,
        to: [PARTNER],
        caseRef: example.caseRef,
        handling: example.handling,
        body: example.body,
        personalData: example.personalData,
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const id = res.body.id as string;
    const wire = await takeFromPartnerInbox(
      `message ${id}`,
      (m) => m.typ === MESSAGE_TYP && m.payload.id === id,
    );
    // On the wire, only the JWE: one entry for the partner's key and one for the sender's own.
    const text = new TextDecoder().decode(wire.data);
    expect(Buffer.from(text.split(".")[1] ?? "", "base64url").toString("utf8")).not.toContain(
      example.personalData.names.given,
    );
    const jwe = (wire.payload.body as Record<string, unknown>).personalData as {
      recipients: Array<{ header: { kid: string } }>;
    };
    expect(jwe.recipients.map((r) => r.header.kid)).toContain(encKey?.kid);
    expect(jwe.recipients).toHaveLength(2);

    const opened = await verify(wire.data, "--enc-key", encKeyFile);
    expect(opened.code, opened.stdout + opened.stderr).toBe(0);
    expect(opened.json.payload).toMatchObject({ id, type: "victim.identified", from: HEKOU });
    const personalData = opened.json.personalData as LocalSubmit["personalData"];
    expect(personalData.names.given).toBe(example.personalData.names.given);
    expect(personalData).toEqual(example.personalData);

    // Without its key the partner holds no entry the data is encrypted to.
    const locked = await verify(wire.data);
    expect(locked.code).toBe(1);
    expect(locked.json).toMatchObject({ error: { code: "personal_data_not_for_us" } });

    // Accepted, as today: the receipt closes the delivery.
    const receivedFile = join(work, `received-${id}.jws`);
    writeFileSync(receivedFile, wire.data);
    const receipt = await pyOk([
      "sign-receipt",
      "--key",
      keyFile,
      "--party-id",
      PARTNER,
      "--jws-file",
      receivedFile,
    ]);
    await js.publish(
      node.gateway.config.inboundSubject,
      new TextEncoder().encode(receipt.jws as string),
      { msgID: receipt.id as string },
    );
    const done = await waitFor(`message ${id} delivered`, async () => {
      const r = await call(node, `/v1/messages/${id}`);
      return r.body.status === "delivered" ? r.body : undefined;
    });
    expect(done.receipts).toMatchObject([{ status: "accepted", jws: receipt.jws }]);
  });

  it("Python verifies a countersigned handover record offline, each signature on its own", async () => {
    // Hekou's gateway key (published in its party document) signs first; Lao Cai, with an
    // ES256 key and a party document of its own, countersigns the same payload.
    const laocai = await makeParty(LAOCAI, { alg: "ES256" });
    const laocaiDoc = join(work, "laocai.jwks.json");
    writeFileSync(
      laocaiDoc,
      JSON.stringify({
        party: {
          id: LAOCAI,
          name: "Lao Cai border guard office",
          country: "VN",
          kind: "border-guard",
          inboundSubject: `liaison.inbox.${LAOCAI}`,
        },
        keys: [
          {
            ...(await exportJWK(laocai.registered.key)),
            kid: laocai.signing.kid,
            alg: "ES256",
            use: "sig",
            validFrom: "2020-01-01T00:00:00.000Z",
          },
        ],
      }),
    );
    const example = JSON.parse(readFileSync(EXAMPLE_09, "utf8")) as {
      handoverRecord: Record<string, unknown>;
    };
    const payload = { ...example.handoverRecord, proposalId: randomUUID() };
    const signed = await signHandoverRecord(payload, node.signingKey);
    const record = await countersignHandoverRecord(signed, laocai.signing);

    const check = (r: HandoverRecord, name: string, ...extra: string[]) => {
      const file = join(work, `record-${name}.json`);
      writeFileSync(file, JSON.stringify(r));
      return py([
        "verify-handover-record",
        "--record",
        file,
        "--jwks",
        gatewayDoc,
        "--jwks",
        laocaiDoc,
        ...extra,
      ]);
    };

    const ok = await check(record, "countersigned");
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.json).toEqual({
      ok: true,
      payload,
      signers: [
        { party: HEKOU, kid: node.signingKey.kid, alg: node.signingKey.alg },
        { party: LAOCAI, kid: laocai.signing.kid, alg: "ES256" },
      ],
    });

    // One signature changed, the other intact: refused, whichever it is.
    const flip = (s: string) => {
      const i = Math.floor(s.length / 2);
      return `${s.slice(0, i)}${s[i] === "A" ? "B" : "A"}${s.slice(i + 1)}`;
    };
    const [first, second] = record.signatures as [
      HandoverRecord["signatures"][0],
      HandoverRecord["signatures"][0],
    ];
    const tamperedRecords: Array<[number, HandoverRecord]> = [
      [2, { ...record, signatures: [first, { ...second, signature: flip(second.signature) }] }],
      [1, { ...record, signatures: [{ ...first, signature: flip(first.signature) }, second] }],
    ];
    for (const [n, tampered] of tamperedRecords) {
      const refused = await check(tampered, `tampered-${n}`);
      expect(refused.code, refused.stdout).toBe(1);
      expect(refused.json).toEqual({
        ok: false,
        error: {
          code: "handover_record_invalid",
          detail: `signature ${n} does not verify with the key its kid names`,
        },
      });
    }

    // A countersignature outside the header profile (typ), however genuine.
    const wrongTyp = await new FlattenedSign(Buffer.from(record.payload, "base64url"))
      .setProtectedHeader({ alg: "ES256", kid: laocai.signing.kid, typ: MESSAGE_TYP })
      .sign(laocai.signing.key);
    const offProfile = await check(
      {
        payload: record.payload,
        signatures: [first, { protected: wrongTyp.protected ?? "", signature: wrongTyp.signature }],
      },
      "typ",
    );
    expect(offProfile.json).toMatchObject({
      ok: false,
      error: { code: "handover_record_invalid", detail: expect.stringMatching(/^signature 2: /) },
    });

    // Signed once: what the countersigner checks before countersigning; incomplete otherwise.
    expect((await check(signed, "signed-once", "--signed-once")).json).toMatchObject({
      ok: true,
      signers: [{ party: HEKOU }],
    });
    expect((await check(signed, "incomplete")).json).toMatchObject({
      ok: false,
      error: { code: "handover_record_incomplete" },
    });
  });
});

/**
 * The batching mode: a second Python partner (LA-MPS-BOKEO) whose party document declares
 * `receiptBatches: true` (protocol.md, Batch receipts), with a stream of its own. The first
 * partner above declares nothing and keeps getting one receipt per message.
 */
const BATCHER = "LA-MPS-BOKEO";
const RECEIPT_BATCH_TYP = "liaison-receipt-batch+jws";
const N = 6;

describe("a Python (jwcrypto) partner that declared receiptBatches", () => {
  let batcherStream: string | undefined;
  let batcherInbox: Consumer;
  const batcherBuffer: WireMessage[] = [];
  let batcherDir: string;
  let batcherKey: string;
  let batcherDoc: string;

  /** Reads the batcher's stream (acknowledging) until `enough` holds for what was read. */
  async function readBatcherInbox<T>(
    what: string,
    enough: (read: WireMessage[]) => T | undefined,
    timeoutMs = 20_000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const done = enough(batcherBuffer);
      if (done !== undefined) return done;
      if (Date.now() > deadline) {
        const seen = batcherBuffer.map((m) => `${String(m.typ)} ${String(m.payload.id)}`);
        throw new Error(`timed out waiting for ${what} on ${BATCHER}'s inbox; read: ${seen}`);
      }
      const m = await batcherInbox.next({ expires: 1000 });
      if (m === null) continue;
      batcherBuffer.push(peek(m.data));
      m.ack();
    }
  }

  beforeAll(async () => {
    const tag = uniqueTag();
    batcherDir = join(work, "batcher");
    const subject = `test.${tag}.inbox.${BATCHER}`;
    const doc = await pyOk([
      "keygen",
      "--party-id",
      BATCHER,
      "--subject",
      subject,
      "--out",
      join(batcherDir, "keys"),
      "--receipt-batches",
    ]);
    expect((doc.party as Record<string, unknown>).receiptBatches).toBe(true);
    batcherKey = join(batcherDir, "keys", "key.json");
    batcherDoc = join(work, "batcher.jwks.json");
    writeFileSync(batcherDoc, JSON.stringify(doc));

    batcherStream = `T_${tag}_${BATCHER.replaceAll("-", "_")}`;
    await jsm.streams.add({
      name: batcherStream,
      subjects: [subject],
      duplicate_window: nanos(10 * 60_000),
    });
    await jsm.consumers.add(batcherStream, {
      durable_name: "partner",
      ack_policy: AckPolicy.Explicit,
    });
    batcherInbox = await js.consumers.get(batcherStream, "partner");

    const registered = await call(node, "/v1/partners", {
      method: "POST",
      json: doc,
      asAdmin: true,
    });
    expect(registered.status, JSON.stringify(registered.body)).toBe(201);
    // The gateway's document, which the partner keeps, declares that it takes batches.
    const gateway = JSON.parse(readFileSync(gatewayDoc, "utf8")) as {
      party: { receiptBatches?: unknown };
    };
    expect(gateway.party.receiptBatches).toBe(true);
  });

  afterAll(async () => {
    if (batcherStream !== undefined) await jsm?.streams.delete(batcherStream).catch(() => {});
  });

  const status = async (id: string) => (await call(node, `/v1/messages/${id}`)).body;

  it("gateway → Python: ONE batch the partner signs closes N deliveries; a forged one closes none", async () => {
    const seed = JSON.parse(readFileSync(SEED_01, "utf8")) as { body: unknown };
    const ids: string[] = [];
    for (let i = 0; i < N; i++) {
      const res = await call(node, "/v1/messages", {
        method: "POST",
        json: { type: "case.notice", to: BATCHER, caseRef: "CN-HEKOU-2026-0042", body: seed.body },
      });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      ids.push(res.body.id as string);
    }
    const received = await readBatcherInbox(`${N} messages`, (read) => {
      const found = ids.map((id) => read.find((m) => m.typ === MESSAGE_TYP && m.payload.id === id));
      return found.every((m) => m !== undefined) ? (found as WireMessage[]) : undefined;
    });

    // The partner verifies each message, then answers them all with one batch of its own.
    const files: string[] = [];
    for (const [i, wire] of received.entries()) {
      const verified = await py(
        ["verify", "--jwks", gatewayDoc, "--self", BATCHER, "--receipt-batches"],
        wire.data,
      );
      expect(verified.code, verified.stdout + verified.stderr).toBe(0);
      expect(verified.json.payload).toMatchObject({ id: ids[i], from: HEKOU, to: [BATCHER] });
      const file = join(batcherDir, `received-${ids[i]}.jws`);
      writeFileSync(file, wire.data);
      files.push(file);
    }
    const signBatch = (key: string) =>
      pyOk([
        "sign-receipt-batch",
        "--key",
        key,
        "--party-id",
        BATCHER,
        "--jwks",
        gatewayDoc,
        ...files.flatMap((f) => ["--jws-file", f]),
      ]);

    // First a batch signed with a key the gateway never registered: quarantined as a whole
    // (step 16, key_unknown), and every delivery stays open.
    await pyOk([
      "keygen",
      "--party-id",
      BATCHER,
      "--subject",
      "unused",
      "--out",
      join(batcherDir, "stranger"),
    ]);
    const forged = await signBatch(join(batcherDir, "stranger", "key.json"));
    await js.publish(
      node.gateway.config.inboundSubject,
      new TextEncoder().encode(forged.jws as string),
      { msgID: forged.digest as string },
    );
    const quarantined = await waitFor("the forged batch quarantined", async () => {
      const r = await call(node, "/v1/quarantine?limit=200");
      const items = r.body.items as Array<Record<string, unknown>>;
      return items.find((q) => q.digest === forged.digest);
    });
    expect(quarantined).toMatchObject({
      code: "key_unknown",
      kind: "receipt",
      claimedFrom: BATCHER,
    });
    for (const id of ids) {
      const m = await status(id);
      expect(m.status, id).not.toBe("delivered");
      expect(m.receipts, id).toEqual([]);
    }

    const batch = await signBatch(batcherKey);
    expect(batch.to).toBe(HEKOU);
    expect((batch.accepted as Array<{ messageId: string }>).map((e) => e.messageId)).toEqual(ids);
    await js.publish(
      node.gateway.config.inboundSubject,
      new TextEncoder().encode(batch.jws as string),
      { msgID: batch.digest as string },
    );

    // Every delivery delivered by that one batch, which the gateway logged once: each message
    // shows its entry as the batch (id, jws, digest), each delivery's receiptId the batch's id.
    for (const [i, id] of ids.entries()) {
      const done = await waitFor(`message ${id} delivered`, async () => {
        const m = await status(id);
        return m.status === "delivered" ? m : undefined;
      });
      expect(done.deliveries).toMatchObject([
        { recipient: BATCHER, status: "delivered", receiptId: batch.id },
      ]);
      expect(done.receipts).toEqual([
        expect.objectContaining({
          id: batch.id,
          from: BATCHER,
          to: HEKOU,
          status: "accepted",
          jws: batch.jws,
          digest: batch.digest,
          messageDigest: (batch.accepted as Array<{ digest: { value: string } }>)[i]?.digest.value,
        }),
      ]);
    }
  });

  it("Python → gateway: the gateway answers N messages with fewer batches, which Python verifies and applies", async () => {
    const seed = JSON.parse(readFileSync(SEED_01, "utf8")) as { body: unknown };
    const bodyFile = join(batcherDir, "body-01.json");
    writeFileSync(bodyFile, JSON.stringify(seed.body));
    const count = 10;
    const sent = await Promise.all(
      Array.from({ length: count }, () =>
        pyOk([
          "sign-message",
          "--key",
          batcherKey,
          "--party-id",
          BATCHER,
          "--to",
          HEKOU,
          "--case-ref",
          "CN-HEKOU-2026-0042",
          "--type",
          "case.notice",
          "--body-file",
          bodyFile,
        ]),
      ),
    );
    const ids = sent.map((s) => s.id as string);
    const sentFiles = sent.map((s) => {
      const file = join(batcherDir, `sent-${s.id as string}.jws`);
      writeFileSync(file, s.jws as string);
      return file;
    });
    // Published together, so that the gateway reads them in few inbound batches.
    await Promise.all(
      sent.map((s) =>
        js.publish(node.gateway.config.inboundSubject, new TextEncoder().encode(s.jws as string), {
          msgID: s.id as string,
        }),
      ),
    );

    // The answers: batch receipts until every message is named.
    const batches = await readBatcherInbox("batch receipts naming every message", (read) => {
      const mine = read.filter(
        (m) =>
          m.typ === RECEIPT_BATCH_TYP &&
          (m.payload.accepted as Array<{ messageId: string }>).some((e) =>
            ids.includes(e.messageId),
          ),
      );
      const named = new Set(
        mine.flatMap((m) =>
          (m.payload.accepted as Array<{ messageId: string }>).map((e) => e.messageId),
        ),
      );
      return ids.every((id) => named.has(id)) ? mine : undefined;
    });
    expect(batches.length).toBeGreaterThanOrEqual(1);
    expect(batches.length).toBeLessThan(count);
    // No single receipt for any of them.
    expect(
      batcherBuffer.filter(
        (m) => m.typ === RECEIPT_TYP && ids.includes(m.payload.messageId as string),
      ),
    ).toEqual([]);

    // The partner verifies each batch (steps 1-23, B1-B4) and closes its deliveries from them.
    const log = join(batcherDir, "batch-log");
    const sentArgs = sentFiles.flatMap((f) => ["--sent", f]);
    const apply = (data: Uint8Array, ...extra: string[]) =>
      py(["verify", "--jwks", gatewayDoc, "--self", BATCHER, ...sentArgs, ...extra], data);
    const closed: string[] = [];
    for (const b of batches) {
      const verified = await apply(b.data, "--receipt-batches", "--batch-log", log);
      expect(verified.code, verified.stdout + verified.stderr).toBe(0);
      expect(verified.json).toMatchObject({
        typ: RECEIPT_BATCH_TYP,
        kid: node.signingKey.kid,
        payload: { type: "receipt.batch", from: HEKOU, to: BATCHER },
        duplicate: false,
        alreadyClosed: [],
      });
      closed.push(...(verified.json.closed as string[]));
    }
    expect([...closed].sort()).toEqual([...ids].sort());
    const deliveries = JSON.parse(readFileSync(join(log, "deliveries.json"), "utf8")) as Record<
      string,
      { status: string; receiptId: string }
    >;
    for (const id of ids) expect(deliveries[id]?.status, id).toBe("delivered");

    // The same batch again changes nothing (B4); a party that declared nothing refuses it (step
    // 10); and one entry naming a message not sent (here: the partner forgot one) refuses it all.
    const first = batches[0] as WireMessage;
    const again = await apply(first.data, "--receipt-batches", "--batch-log", log);
    expect(again.json).toMatchObject({ duplicate: true, closed: [] });
    const undeclared = await apply(first.data);
    expect(undeclared.json).toMatchObject({ error: { code: "jws_header_invalid" } });
    // Its signature changed: refused (step 18), as is the intact batch for another party (B1).
    const text = new TextDecoder().decode(first.data);
    const [h, p, sig = ""] = text.split(".");
    const i = Math.floor(sig.length / 2);
    const flipped = `${h}.${p}.${sig.slice(0, i)}${sig[i] === "A" ? "B" : "A"}${sig.slice(i + 1)}`;
    const tampered = await apply(new TextEncoder().encode(flipped), "--receipt-batches");
    expect(tampered.json).toMatchObject({ error: { code: "signature_invalid" } });
    const elsewhere = await py(
      ["verify", "--jwks", gatewayDoc, "--self", PARTNER, "--receipt-batches", ...sentArgs],
      first.data,
    );
    expect(elsewhere.json).toMatchObject({ error: { code: "misaddressed" } });
    const forgotten = (first.payload.accepted as Array<{ messageId: string }>)[0]?.messageId;
    const fewer = sentFiles.filter((f) => !f.endsWith(`sent-${forgotten}.jws`));
    const unknown = await py(
      [
        "verify",
        "--jwks",
        gatewayDoc,
        "--self",
        BATCHER,
        "--receipt-batches",
        ...fewer.flatMap((f) => ["--sent", f]),
      ],
      first.data,
    );
    expect(unknown.json).toMatchObject({ error: { code: "message_unknown" } });
  });
});
