/**
 * Each country on its own nats-server, joined by NATS's federation (leaf nodes of a hub, a
 * JetStream domain per country): the link between China's server and the hub is cut for ten
 * seconds under load and restored. Hekou keeps accepting (its outbound stream is in its own
 * domain), Lao Cai's stream takes everything once the link is back, and the receipts come back
 * the same way: nothing lost, nothing logged twice. The case also checks that the cut did cut:
 * Lao Cai logs nothing new while it lasts.
 */
import { defineFaultCase, loggedAtReceiver, sleep } from "./harness.ts";

let loggedDuringCut = Number.NaN;

defineFaultCase({
  name: "link-cut",
  title:
    "the link between the countries' nats-servers cut under load and restored: each message logged once, all delivered",
  federated: true,
  async fault({ federation, net }) {
    const link = federation?.links.CN;
    if (link === undefined) throw new Error("no federation");
    const started = Date.now();
    link.cut();
    // What was already crossing when the link went down may still land in the first moment.
    await sleep(2000);
    const before = await loggedAtReceiver(net);
    await sleep(8000);
    loggedDuringCut = (await loggedAtReceiver(net)) - before;
    link.restore();
    await federation?.connected(30_000);
    return { cut_s: ((Date.now() - started) / 1000).toFixed(1) };
  },
  async check() {
    return {
      fields: { logged_during_cut: loggedDuringCut },
      problems:
        loggedDuringCut === 0
          ? []
          : [`Lao Cai logged ${loggedDuringCut} messages while the link was cut`],
    };
  },
});
