/**
 * Graceful shutdown. In process: once stop() begins, submits answer 503 shutting_down and
 * /readyz says not ready. As a real process (`node --import tsx src/serve.ts`, what `npx tsx`
 * and `npm start` run): SIGTERM in the middle of traffic both ways ends it with status 0 well
 * within LIAISON_SHUTDOWN_TIMEOUT_SECONDS, and once it is started again every message accepted
 * on either side is delivered, and logged by its recipient exactly once.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { freePort } from "../../src/devtools/free-port.ts";
import { generateEncryptionKeyFile, generateKeyFile } from "../../src/registry/key-files.ts";
import { parsePartyDocument } from "../../src/registry/party-document.ts";
import { stopWithin } from "../../src/serve.ts";
import { createTestDatabase } from "../helpers/databases.ts";
import { call, startNode, type TestNode, uniqueTag, waitFor } from "../helpers/network.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

const LIMIT_SECONDS = 20;
const root = new URL("../..", import.meta.url).pathname;

describe("stopping in process", () => {
  it("answers submits 503 shutting_down and /readyz not ready as soon as stop() begins", async () => {
    const node = await startNode(inject("natsUrl"), uniqueTag(), { partyId: "CN-MPS-HEKOU" });
    expect((await node.gateway.app.request("/readyz")).status).toBe(200);
    const stopped = node.gateway.stop();
    const res = await call(node, "/v1/messages", {
      method: "POST",
      json: {
        type: "case.notice",
        to: "VN-BGC-LAOCAI",
        caseRef: "CN-HEKOU-2026-0500",
        body: CASE_NOTICE_BODY,
      },
    });
    expect(res.status).toBe(503);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(res.body.code).toBe("shutting_down");
    const ready = await node.gateway.app.request("/readyz");
    expect(ready.status).toBe(503);
    await stopped;
    // Starting a gateway on an embedded PGlite store takes long on a busy machine.
  }, 90_000);

  it("gives up after the time limit, naming what was still running", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = {
      info: () => {},
      error: (fields: Record<string, unknown>) => void lines.push(fields),
    } as unknown as Parameters<typeof stopWithin>[0]["log"];
    const never = {
      stop: () => new Promise<void>(() => {}),
      unfinishedStopSteps: () => ["x"],
      log,
    };
    const started = Date.now();
    expect(await stopWithin(never, 300)).toBe(1);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(lines).toEqual([expect.objectContaining({ unfinished: ["x"] })]);
    const quick = { stop: async () => {}, unfinishedStopSteps: () => [], log };
    expect(await stopWithin(quick, 300)).toBe(0);
  });
});

interface Child {
  process: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

describe("SIGTERM to a gateway process in the middle of traffic", () => {
  const tag = uniqueTag();
  const partyId = "VN-BGC-LAOCAI";
  const dataDir = mkdtempSync(join(tmpdir(), "liaison-shutdown-"));
  const token = randomBytes(24).toString("base64url");
  const adminToken = randomBytes(24).toString("base64url");
  let env: Record<string, string>;
  let url: string;
  let hekou: TestNode | undefined;
  let child: Child | undefined;
  let dropDatabase: () => Promise<void> = async () => {};

  function startChild(): Child {
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(
        ([k, v]) => v !== undefined && !k.startsWith("LIAISON_") && k !== "DATABASE_URL",
      ),
    ) as Record<string, string>;
    const proc = spawn(process.execPath, ["--import", "tsx", "src/serve.ts"], {
      cwd: root,
      env: { ...inherited, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const output: string[] = [];
    proc.stdout?.on("data", (d: Buffer) => output.push(d.toString()));
    proc.stderr?.on("data", (d: Buffer) => output.push(d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.once("exit", (c) => resolve(c)));
    return { process: proc, output, exited };
  }

  async function childReady(c: Child): Promise<void> {
    await waitFor(
      "the gateway process ready",
      async () => {
        if (c.process.exitCode !== null) throw new Error(`exited: ${c.output.join("")}`);
        const res = await fetch(`${url}/readyz`).catch(() => undefined);
        return res?.status === 200 ? true : undefined;
      },
      60_000,
    );
  }

  async function childCall(path: string, init: RequestInit = {}, admin = false) {
    const res = await fetch(`${url}${path}`, {
      ...init,
      headers: {
        authorization: `Bearer ${admin ? adminToken : token}`,
        "content-type": "application/json",
      },
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  beforeAll(async () => {
    const db = await createTestDatabase(inject("databaseUrl"));
    dropDatabase = db.drop;
    const keysDir = join(dataDir, "keys");
    await generateKeyFile(keysDir, { validFrom: new Date(Date.now() - 86_400_000) });
    await generateEncryptionKeyFile(keysDir, { validFrom: new Date(Date.now() - 86_400_000) });
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    env = {
      LIAISON_PARTY_ID: partyId,
      LIAISON_INBOUND_SUBJECT: `test.${tag}.inbox.${partyId}`,
      LIAISON_STREAM: `T_${tag}_${partyId.replaceAll("-", "_")}`,
      LIAISON_HTTP_PORT: String(port),
      LIAISON_NATS_URL: inject("natsUrl"),
      LIAISON_DATA_DIR: dataDir,
      DATABASE_URL: db.url,
      LIAISON_API_TOKEN: token,
      LIAISON_ADMIN_TOKEN: adminToken,
      LIAISON_RETRY_BASE_MS: "300",
      LIAISON_RETRY_MAX_MS: "2000",
      LIAISON_SHUTDOWN_TIMEOUT_SECONDS: String(LIMIT_SECONDS),
      LIAISON_LOG_LEVEL: "info",
    };
    hekou = await startNode(inject("natsUrl"), tag, { partyId: "CN-MPS-HEKOU" });
    child = startChild();
    await childReady(child);
    // Each registers the other from the document it publishes.
    const theirs = await (await fetch(`${url}/.well-known/jwks.json`)).json();
    const { party, keys } = await parsePartyDocument(theirs);
    await hekou.gateway.registry.add(party, keys);
    const ours = await (await hekou.gateway.app.request("/.well-known/jwks.json")).json();
    const registered = await childCall(
      "/v1/partners",
      { method: "POST", body: JSON.stringify(ours) },
      true,
    );
    expect(registered.status).toBe(201);
  }, 120_000);

  afterAll(async () => {
    if (child !== undefined && child.process.exitCode === null) {
      child.process.kill("SIGTERM");
      await child.exited;
    }
    await hekou?.gateway.stop();
    await dropDatabase();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("exits 0 within the limit, and after a restart every accepted message is delivered exactly once", async () => {
    const node = hekou as TestNode;
    const toChild: string[] = [];
    const fromChild: string[] = [];
    let n = 0;
    const notice = (from: string) => ({
      type: "case.notice",
      to: from === "hekou" ? partyId : "CN-MPS-HEKOU",
      caseRef: `${from === "hekou" ? "CN-HEKOU" : "VN-LAOCAI"}-2026-${String(600 + n++).padStart(4, "0")}`,
      body: CASE_NOTICE_BODY,
    });
    const submitToChild = async () => {
      const res = await call(node, "/v1/messages", { method: "POST", json: notice("hekou") });
      expect(res.status).toBe(202);
      toChild.push(res.body.id as string);
    };
    // What the process accepted (202) must arrive; refused or unanswered submits were not taken.
    const refusals: unknown[] = [];
    const submitFromChild = async () => {
      const res = await childCall("/v1/messages", {
        method: "POST",
        body: JSON.stringify(notice("laocai")),
      }).catch((): { status: number; body: Record<string, unknown> } => ({ status: 0, body: {} }));
      if (res.status === 202) fromChild.push(res.body.id as string);
      else refusals.push(res.status === 503 ? res.body.code : res.status);
    };

    for (let i = 0; i < 10; i++) await Promise.all([submitToChild(), submitFromChild()]);
    // Traffic in both directions is flowing: one delivered each way.
    await waitFor("a message delivered to the process", async () => {
      const s = await call(node, `/v1/messages/${toChild[0]}`);
      return s.body.status === "delivered" ? true : undefined;
    });
    // Keep submitting on both sides while the process stops.
    let traffic = true;
    const background = (async () => {
      while (traffic) await Promise.all([submitToChild(), submitFromChild()]);
    })();
    const c = child as Child;
    const signalledAt = Date.now();
    c.process.kill("SIGTERM");
    const code = await c.exited;
    const tookMs = Date.now() - signalledAt;
    traffic = false;
    await background;
    expect(code, c.output.join("")).toBe(0);
    expect(tookMs).toBeLessThan(LIMIT_SECONDS * 1000);
    expect(c.output.join("")).toContain("stopped in order");
    // Whatever the process answered while it stopped was a refusal, never an error of its own.
    for (const r of refusals) expect([0, "shutting_down"]).toContain(r);

    child = startChild();
    await childReady(child);
    for (const id of toChild) {
      await waitFor(
        `delivered to the process ${id}`,
        async () =>
          (await call(node, `/v1/messages/${id}`)).body.status === "delivered" ? true : undefined,
        60_000,
      );
    }
    for (const id of fromChild) {
      await waitFor(
        `delivered from the process ${id}`,
        async () =>
          (await childCall(`/v1/messages/${id}`)).body.status === "delivered" ? true : undefined,
        60_000,
      );
    }
    const inboundAtChild = await childCall("/v1/messages?direction=inbound&limit=200");
    expect((inboundAtChild.body.items as Array<{ id: string }>).map((m) => m.id).sort()).toEqual(
      [...toChild].sort(),
    );
    const inboundAtHekou = await call(node, "/v1/messages?direction=inbound&limit=200");
    expect((inboundAtHekou.body.items as Array<{ id: string }>).map((m) => m.id).sort()).toEqual(
      [...fromChild].sort(),
    );
    expect((await childCall("/v1/quarantine")).body.items).toEqual([]);
    expect((await call(node, "/v1/quarantine")).body.items).toEqual([]);
    console.info(
      `shutdown: ${tookMs} ms; to the process ${toChild.length}, from it ${fromChild.length}, refused while stopping ${refusals.length}`,
    );

    const again = child as Child;
    again.process.kill("SIGTERM");
    expect(await again.exited).toBe(0);
  }, 240_000);
});
