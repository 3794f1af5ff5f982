/**
 * The limits every JSON document entering the gateway is held to, whoever sends it (a partner's
 * JWS header and payload, a local user's request, a party document), and that the gateway holds
 * what it signs to, so that it never signs what a partner's gateway would refuse.
 *
 * Pure: text and values in, verdicts out. Nothing here recurses, so no input can exhaust the
 * stack: the depth of JSON text is measured by a linear scan BEFORE it is parsed, and parsed
 * values are walked with an explicit stack.
 */
import type { ErrorIssue } from "./errors.ts";

/**
 * The deepest nesting of objects and arrays accepted in any JSON document (the document itself
 * is level 1: `{}` is 1 deep, `{"a":[{}]}` 3). The deepest document the schemas admit today is a
 * case.notice envelope, 8 levels (envelope, body, routes, a route, its waypoints, a waypoint, its
 * place, geo; the example message and the seeds reach 7), a receipt 3, a party document 3 and a
 * JWS header 1. 32 leaves room for four times that in later schema versions, while no parser or
 * validator on either side gets anywhere near exhausting its stack.
 */
export const MAX_JSON_DEPTH = 32;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/**
 * The nesting depth of JSON text, without parsing it: one pass counting `{` and `[` outside
 * strings (escapes honoured, so `"\"["` holds no bracket). The scan stops as soon as the depth
 * exceeds `limit` and then answers `limit + 1`. For text that is not JSON the answer means
 * nothing, but it is still bounded and cheap; JSON.parse refuses such text afterwards.
 */
export function jsonTextDepth(text: string, limit: number = MAX_JSON_DEPTH): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // A string ends at the next quote not escaped, i.e. after an even run of backslashes
      // (the run is counted back to the opening quote at most). indexOf skips the string's
      // text natively, which most of a message is; each backslash is counted once at most.
      let close = i;
      for (;;) {
        close = text.indexOf('"', close + 1);
        if (close === -1) return deepest; // unterminated: not JSON (JSON.parse refuses it)
        let backslashes = 0;
        for (let k = close - 1; k > i && text.charCodeAt(k) === BACKSLASH; k--) backslashes++;
        if (backslashes % 2 === 0) break;
      }
      i = close;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
  return deepest;
}

export type BoundedParse =
  | { ok: true; value: unknown }
  | { ok: false; reason: "too_deep" | "not_json" };

/** JSON.parse, refusing text nested deeper than `maxDepth` before it is parsed. */
export function parseJsonText(text: string, maxDepth: number = MAX_JSON_DEPTH): BoundedParse {
  if (jsonTextDepth(text, maxDepth) > maxDepth) return { ok: false, reason: "too_deep" };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, reason: "not_json" };
  }
}

/**
 * JSON admits U+0000 and unpaired surrogates (as escapes) in strings; PostgreSQL's text and
 * jsonb refuse them (and a lone surrogate cannot be encoded as UTF-8 at all).
 */
export function isStorableString(value: string): boolean {
  return value.isWellFormed() && !value.includes("\u0000");
}

/** RFC 6901: `~` is written `~0` and `/` is written `~1` in a pointer segment. */
export function escapePointerSegment(segment: string): string {
  return segment.replaceAll("~", "~0").replaceAll("/", "~1");
}

export const UNSTORABLE_STRING = "must not hold U+0000 or a lone surrogate";
export const UNSTORABLE_NAME = "must not have a member name holding U+0000 or a lone surrogate";
export const tooDeep = (maxDepth: number) => `must not nest deeper than ${maxDepth} levels`;

export interface JsonLimitIssue extends ErrorIssue {
  /** depth: a container deeper than the limit; string: a string value; name: a member name. */
  kind: "depth" | "string" | "name";
}

interface Visit {
  value: unknown;
  /** Levels of containers above this value (the document itself has none). */
  above: number;
  parent: Visit | null;
  /** This value's pointer segment, unescaped (a member name or an array index). */
  segment: string;
  /** A member name to check rather than a value. */
  isName: boolean;
}

function pointerOf(visit: Visit | null): string {
  const segments: string[] = [];
  for (let v = visit; v !== null && v.parent !== null; v = v.parent) segments.push(v.segment);
  return segments
    .reverse()
    .map((s) => `/${escapePointerSegment(s)}`)
    .join("");
}

/**
 * The first place, in document order, where a parsed JSON value breaks the limits: a container
 * deeper than `maxDepth`, or a string (member names included) holding U+0000 or a lone
 * surrogate; null when there is none. The issue's `path` is a JSON pointer (RFC 6901) that names
 * the place, never the value: for an offending member name, the object that holds it. Every
 * member name in the pointer has been checked already, so the pointer itself is storable.
 * Iterative; `value` must be acyclic (parsed JSON is), and the depth bound stops the walk at
 * `maxDepth` levels in any case.
 */
export function checkJsonValue(
  value: unknown,
  maxDepth: number = MAX_JSON_DEPTH,
): JsonLimitIssue | null {
  // Nearly every value is within the limits: a walk that only answers yes or no (no pointers
  // kept, nothing allocated per value) clears it, and only a value that fails is walked again
  // to name the first place that breaks them.
  return withinLimits(value, maxDepth) ? null : firstIssue(value, maxDepth);
}

/** Whether `value` is within the limits: iterative, with two parallel stacks. */
function withinLimits(value: unknown, maxDepth: number): boolean {
  const values: unknown[] = [value];
  const levels: number[] = [0];
  while (values.length > 0) {
    const current = values.pop();
    const above = levels.pop() as number;
    if (typeof current === "string") {
      if (!isStorableString(current)) return false;
      continue;
    }
    if (typeof current !== "object" || current === null) continue;
    if (above + 1 > maxDepth) return false;
    if (Array.isArray(current)) {
      for (let i = 0; i < current.length; i++) {
        values.push(current[i]);
        levels.push(above + 1);
      }
    } else {
      for (const name of Object.keys(current)) {
        if (!isStorableString(name)) return false;
        values.push((current as Record<string, unknown>)[name]);
        levels.push(above + 1);
      }
    }
  }
  return true;
}

function firstIssue(value: unknown, maxDepth: number): JsonLimitIssue | null {
  const stack: Visit[] = [{ value, above: 0, parent: null, segment: "", isName: false }];
  for (let visit = stack.pop(); visit !== undefined; visit = stack.pop()) {
    const current = visit.value;
    if (visit.isName) {
      if (!isStorableString(visit.segment)) {
        return { kind: "name", path: pointerOf(visit.parent), message: UNSTORABLE_NAME };
      }
      continue;
    }
    if (typeof current === "string") {
      if (!isStorableString(current)) {
        return { kind: "string", path: pointerOf(visit), message: UNSTORABLE_STRING };
      }
      continue;
    }
    if (typeof current !== "object" || current === null) continue;
    if (visit.above + 1 > maxDepth) {
      return { kind: "depth", path: pointerOf(visit), message: tooDeep(maxDepth) };
    }
    const above = visit.above + 1;
    if (Array.isArray(current)) {
      for (let i = current.length - 1; i >= 0; i--) {
        stack.push({ value: current[i], above, parent: visit, segment: String(i), isName: false });
      }
    } else {
      const members = Object.entries(current);
      // Pushed in reverse, each value below its name: popped in document order, the name first.
      for (let i = members.length - 1; i >= 0; i--) {
        const [name, member] = members[i] as [string, unknown];
        stack.push({ value: member, above, parent: visit, segment: name, isName: false });
        stack.push({ value: undefined, above, parent: visit, segment: name, isName: true });
      }
    }
  }
  return null;
}
