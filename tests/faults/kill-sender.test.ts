/**
 * kill -9 of the sending gateway mid-batch, then a restart: every submit it had answered 202
 * for is in its database and is delivered once; the submits it refused or never answered while
 * it was down are not counted as sent (those it logged anyway must be delivered too: the
 * checker requires every delivery of the sender to end `delivered`).
 */
import { defineFaultCase } from "./harness.ts";

defineFaultCase({
  name: "kill-sender",
  title: "kill -9 of the sender mid-batch, restarted: nothing answered 202 is lost or doubled",
  async fault({ net }) {
    const [sender] = net.sender.replicas;
    if (sender === undefined) throw new Error("no sender");
    await sender.kill9();
    await sender.start();
    return undefined;
  },
});
