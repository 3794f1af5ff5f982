/**
 * The checker can fail: a short clean run counts nothing wrong; then each kind of fault the
 * suite looks for is written into the two databases by hand (a message the receiver lost, one
 * logged twice by id, one by bytes, a receipt issued twice, one applied twice, a quarantined
 * byte string, a delivery that failed, a 202 the sender has no record of, a message the receiver
 * logged that no submit was answered 202 for) and each is counted.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import {
  type CaseNats,
  type Network,
  problems,
  settle,
  startCaseNats,
  startLoad,
  startNetwork,
} from "./harness.ts";

const COUNT = 40;
let nats: CaseNats;
let net: Network;

beforeAll(async () => {
  nats = await startCaseNats();
  net = await startNetwork({
    name: "checker",
    databaseServerUrl: inject("faultsDatabaseUrl"),
    sender: { natsUrl: nats.url },
    receiver: { natsUrl: nats.url },
  });
});

afterAll(async () => {
  await net?.stop();
  await nats?.stop();
});

it("counts each kind of fault written into the databases", async () => {
  const load = startLoad(net, { count: COUNT, ratePerSecond: 50 });
  await load.done;
  const clean = await settle(net, load);
  expect(problems(clean, COUNT)).toEqual([]);
  expect(clean).toMatchObject({ sent: COUNT, delivered: COUNT, lost: 0, duplicates: 0 });

  const [lostId, byBytes, byId, issuedTwice, appliedTwice, failed] = load.accepted;
  const r = net.receiver.sql;
  const s = net.sender.sql;
  // Lost: the receiver never logged it.
  await r`DELETE FROM messages WHERE direction = 'inbound' AND id = ${lostId as string}`;
  // Logged twice, by bytes: the same digest under another id.
  await r`
    INSERT INTO messages (id, direction, type, schema_version, from_party, to_parties, case_ref,
      in_reply_to, sent_at, expires_at, classification, kid, jws, digest)
    SELECT ${randomUUID()}, direction, type, schema_version, from_party, to_parties, case_ref,
      in_reply_to, sent_at, expires_at, classification, kid, jws, digest
    FROM messages WHERE direction = 'inbound' AND id = ${byBytes as string}`;
  // Logged twice, by id: the unique index would refuse it, so it goes first.
  await r`DROP INDEX messages_direction_from_id_uq`;
  await r`
    INSERT INTO messages (id, direction, type, schema_version, from_party, to_parties, case_ref,
      in_reply_to, sent_at, expires_at, classification, kid, jws, digest)
    SELECT id, direction, type, schema_version, from_party, to_parties, case_ref,
      in_reply_to, sent_at, expires_at, classification, kid, jws, 'other' || digest
    FROM messages WHERE direction = 'inbound' AND id = ${byId as string}`;
  // Logged, but no submit was answered 202 for it (a refused submit made anyway): another id,
  // other bytes. (The copy by bytes above, under a new id, is such a message too.)
  await r`
    INSERT INTO messages (id, direction, type, schema_version, from_party, to_parties, case_ref,
      in_reply_to, sent_at, expires_at, classification, kid, jws, digest)
    SELECT ${randomUUID()}, direction, type, schema_version, from_party, to_parties, case_ref,
      in_reply_to, sent_at, expires_at, classification, kid, jws, 'extra' || digest
    FROM messages WHERE direction = 'inbound' AND id = ${load.accepted[6] as string}`;
  // A second receipt issued by the receiver, and a second one applied by the sender.
  const copyReceipt = (direction: string, messageId: string) => `
    INSERT INTO receipts (id, direction, message_id, message_digest, from_party, to_party,
      status, errors, jws, digest)
    SELECT '${randomUUID()}', direction, message_id, message_digest, from_party, to_party,
      status, errors, jws, digest
    FROM receipts WHERE direction = '${direction}' AND message_id = '${messageId}'`;
  await r.unsafe(copyReceipt("issued", issuedTwice as string));
  await s.unsafe(copyReceipt("received", appliedTwice as string));
  // Quarantined at the receiver.
  await r`
    INSERT INTO quarantine (subject, raw, digest, code, detail, issues, kind)
    VALUES ('liaison.inbox.VN-BGC-LAOCAI', ${Buffer.from("not a message")}, 'x', 'jws_invalid',
      'written by the checker test', '[]'::jsonb, 'unknown')`;
  // A delivery that ended failed.
  await s`UPDATE deliveries SET status = 'failed' WHERE message_id = ${failed as string}`;
  // A 202 the sender has no record of.
  load.accepted.push(randomUUID());

  const tally = await settle(net, load, { deadlineMs: 1000 });
  expect(tally).toMatchObject({
    sent: COUNT + 1,
    delivered: COUNT - 1,
    lost: 2,
    missingAtSender: 1,
    extra: 2,
    duplicateIds: 1,
    duplicateDigests: 1,
    receiptsIssuedTwice: 1,
    receiptsAppliedTwice: 1,
    duplicates: 4,
    quarantined: 1,
    quarantineCodes: { "receiver:jws_invalid": 1 },
    undelivered: { failed: 1 },
  });
  expect(problems(tally, COUNT)).toHaveLength(7);
});
