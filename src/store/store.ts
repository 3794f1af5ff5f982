/**
 * The store the delivery core runs on: every aggregate bound to the database, and
 * `transaction(work)` binding them all to one transaction.
 */
import type { Store, Stores } from "../delivery/ports.ts";
import { SqlCaseLog } from "./case-log.ts";
import type { Db } from "./database.ts";
import { SqlDeliveryOutbox } from "./delivery-outbox.ts";
import { SqlInboundLog } from "./inbound-log.ts";
import { SqlOutboundLog } from "./outbound-log.ts";
import { SqlQuarantineLog } from "./quarantine-log.ts";
import { SqlReceiptLog } from "./receipt-log.ts";

function bind(db: Db): Stores {
  return {
    cases: new SqlCaseLog(db),
    outbound: new SqlOutboundLog(db),
    outbox: new SqlDeliveryOutbox(db),
    inbound: new SqlInboundLog(db),
    receipts: new SqlReceiptLog(db),
    quarantine: new SqlQuarantineLog(db),
  };
}

export function createStore(db: Db): Store {
  return {
    ...bind(db),
    transaction: (work) => db.transaction((tx) => work(bind(tx as unknown as Db))),
  };
}
