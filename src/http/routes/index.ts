/** Every route the app serves, in the order they are registered and documented. */
import type { RouteDeclaration } from "../route.ts";
import { getAlerts } from "./get-alerts.ts";
import { getApiReference } from "./get-api-reference.ts";
import { getApiReferenceScript } from "./get-api-reference-script.ts";
import { getCase } from "./get-case.ts";
import { getCasePersonalData } from "./get-case-personal-data.ts";
import { getErrorsDoc } from "./get-errors-doc.ts";
import { getJwks } from "./get-jwks.ts";
import { getMessage } from "./get-message.ts";
import { getMetrics } from "./get-metrics.ts";
import { getOpenApi } from "./get-openapi.ts";
import { healthz } from "./healthz.ts";
import { listCases } from "./list-cases.ts";
import { listMessages } from "./list-messages.ts";
import { listPartners } from "./list-partners.ts";
import { listQuarantine } from "./list-quarantine.ts";
import { postMessage } from "./post-message.ts";
import { postPartner } from "./post-partner.ts";
import { readyz } from "./readyz.ts";

export const ROUTES: readonly RouteDeclaration[] = [
  postMessage,
  getMessage,
  listMessages,
  listCases,
  getCase,
  getCasePersonalData,
  listQuarantine,
  listPartners,
  postPartner,
  getJwks,
  healthz,
  readyz,
  getMetrics,
  getAlerts,
  getErrorsDoc,
  getOpenApi,
  getApiReference,
  getApiReferenceScript,
];
