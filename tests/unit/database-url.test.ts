/**
 * What openDatabase refuses before it connects to anything: a DATABASE_URL postgres.js cannot
 * parse, and a list of servers that could lead the gateway to a standby. Each refusal is a
 * typed config_invalid that names the setting and never carries the URL's password.
 */
import { afterEach, describe, expect, it } from "vitest";
import { LiaisonError } from "../../src/protocol/errors.ts";
import { openDatabase } from "../../src/store/database.ts";

const SECRET = "S3cretPW";

async function refusal(url: string): Promise<LiaisonError> {
  const err = await openDatabase({ url }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LiaisonError);
  const refused = err as LiaisonError;
  expect(refused.code).toBe("config_invalid");
  expect(refused.message).toContain("DATABASE_URL");
  expect(JSON.stringify({ ...refused, message: refused.message })).not.toContain(SECRET);
  return refused;
}

describe("openDatabase: the DATABASE_URL it refuses", () => {
  const saved = process.env.PGTARGETSESSIONATTRS;
  afterEach(() => {
    if (saved === undefined) delete process.env.PGTARGETSESSIONATTRS;
    else process.env.PGTARGETSESSIONATTRS = saved;
  });

  it("refuses a URL the driver cannot parse, naming the setting and not the password", async () => {
    // Unparseable for Node's URL: a port out of range; an unencoded '?' in the password.
    await refusal(`postgres://liaison:${SECRET}@127.0.0.1:99999/db`);
    await refusal(`postgres://liaison:${SECRET}?x@127.0.0.1:5432/db`);
    // Malformed percent-encoding in the host list.
    await refusal(`postgres://liaison:${SECRET}@h1%ZZ,h2/db?target_session_attrs=primary`);
  });

  it("reads the servers as the driver does: after the first '@', percent-decoded", async () => {
    // postgres.js splits the authority at its first '@' and decodes it: two servers here.
    const first = await refusal(`postgres://u:a@b,c@127.0.0.1:1/db`);
    expect(first.message).toContain("several servers");
    const encoded = await refusal("postgres://u@h1%2Ch2/db");
    expect(encoded.message).toContain("several servers");
  });

  it("takes the environment's target_session_attrs when the URL's is empty, as the driver does", async () => {
    process.env.PGTARGETSESSIONATTRS = "standby";
    const refused = await refusal("postgres://u@127.0.0.1:1/db?target_session_attrs=");
    expect(refused.message).toContain("must be primary");
  });
});
