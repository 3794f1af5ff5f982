/**
 * The HTTP runner: realises HTTP plans and sends them over real sockets (node:http, keep-alive)
 * to the gateways, a few in flight, and judges each answer:
 *   - status >= 500, or no answer at all: a server error;
 *   - a 4xx that is not application/problem+json with a string `code` (and the same `status`):
 *     a server error;
 *   - a 2xx for a request the API must refuse (`expect: refuse`), or a 4xx for a canonical
 *     request (`expect: ok`): a server error (a wrong answer).
 * Messages the sender accepted (202) are remembered: the wire check follows them to the receiver.
 */
import { Agent, request } from "node:http";
import type { Findings } from "./findings.ts";
import {
  type HttpContext,
  type HttpInput,
  type HttpPlan,
  httpPlans,
  realizeHttp,
} from "./http-inputs.ts";
import type { FuzzNetwork, FuzzNode } from "./network.ts";
import { plans } from "./wire-runner.ts";

const WORKERS = 16;

interface Answer {
  status: number;
  contentType: string;
  body: Buffer;
}

export class HttpRunner {
  /** Message id → what was submitted, for every 202 of the sender. */
  readonly accepted = new Map<string, string>();
  sent = 0;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: WORKERS });

  constructor(
    private readonly net: FuzzNetwork,
    private readonly ctx: HttpContext,
    private readonly findings: Findings,
  ) {}

  async run(count: number, seed: number): Promise<void> {
    const queue = plans<HttpPlan>(httpPlans, seed, 2, count);
    const worker = async () => {
      for (;;) {
        const next = queue.next();
        if (next.done === true) return;
        const plan = next.value;
        const input = realizeHttp(plan, this.ctx);
        this.sent += 1;
        await this.one(plan.gen, input);
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, worker));
    this.agent.destroy();
  }

  private async one(gen: string, input: HttpInput): Promise<void> {
    const node = input.target === "sender" ? this.net.sender : this.net.receiver;
    const where = `http ${gen}`;
    let answer: Answer;
    try {
      answer = await this.send(node, input).catch((err: { reused?: boolean }) => {
        // A kept-alive socket the server closed meanwhile: retry once, on a new connection.
        if (err.reused === true) return this.send(node, input, false);
        throw err;
      });
    } catch (err) {
      this.findings.add(
        "server_errors",
        `${where}: no answer (${(err as { code?: string }).code ?? String(err)})`,
        input.desc,
      );
      return;
    }
    const { status, contentType, body } = answer;
    let problem: { code?: unknown; status?: unknown } | undefined;
    if (contentType.startsWith("application/problem+json")) {
      try {
        problem = JSON.parse(body.toString("utf8")) as typeof problem;
      } catch {
        problem = undefined;
      }
    }
    const code = typeof problem?.code === "string" ? problem.code : undefined;
    if (status >= 500) {
      this.findings.add("server_errors", `${where} → ${status} ${code ?? contentType}`, input.desc);
    } else if (status >= 400) {
      if (code === undefined || problem?.status !== status) {
        this.findings.add(
          "server_errors",
          `${where} → ${status} without a problem+json code`,
          `${input.desc} (content-type ${JSON.stringify(contentType)})`,
        );
      } else if (input.expect === "ok") {
        this.findings.add(
          "server_errors",
          `${where} → ${status} ${code} for ${input.why}`,
          input.desc,
        );
      }
    } else if (status >= 200 && status < 300) {
      if (input.expect === "refuse") {
        this.findings.add("server_errors", `${where} → ${status} though ${input.why}`, input.desc);
      }
      if (status === 202 && input.path === "/v1/messages") {
        let id: unknown;
        try {
          id = (JSON.parse(body.toString("utf8")) as { id?: unknown }).id;
        } catch {
          id = undefined;
        }
        if (typeof id !== "string") {
          this.findings.add("server_errors", `${where} → 202 without a message id`, input.desc);
          return;
        }
        this.accepted.set(id, `${gen}: ${input.desc}`);
        this.ctx.accepted.push(id);
        if (this.ctx.accepted.length > 500) this.ctx.accepted.shift();
      }
    } else {
      this.findings.add("server_errors", `${where} → unexpected status ${status}`, input.desc);
    }
  }

  private send(node: FuzzNode, input: HttpInput, keepAlive = true): Promise<Answer> {
    const url = new URL(node.gateway.url);
    // With an array of headers Node adds neither Host nor Content-Length.
    const headers: string[] = ["host", url.host];
    for (const [name, value] of input.headers) {
      headers.push(
        name,
        value
          .replace("$API-1", node.token.slice(0, -1))
          .replace("$API", node.token)
          .replace("$ADMIN", node.adminToken),
      );
    }
    if (input.body !== undefined) headers.push("content-length", String(input.body.byteLength));
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          method: input.method,
          path: input.path,
          headers,
          agent: keepAlive ? this.agent : false,
          timeout: 60_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              contentType: String(res.headers["content-type"] ?? ""),
              body: Buffer.concat(chunks),
            }),
          );
          res.on("error", reject);
        },
      );
      req.on("timeout", () =>
        req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })),
      );
      req.on("error", (err) => reject(Object.assign(err, { reused: req.reusedSocket })));
      req.end(input.body === undefined ? undefined : Buffer.from(input.body));
    });
  }
}
