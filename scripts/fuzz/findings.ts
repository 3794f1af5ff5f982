/**
 * The accounting: four counters and, per counter, the kinds of finding seen (generator and what
 * went wrong) with a count and one example each. Examples are descriptions, never raw inputs.
 */
export const CATEGORIES = ["crashes", "server_errors", "unquarantined", "stuck"] as const;
export type Category = (typeof CATEGORIES)[number];

const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

export class Findings {
  readonly counts: Record<Category, number> = {
    crashes: 0,
    server_errors: 0,
    unquarantined: 0,
    stuck: 0,
  };
  private readonly kinds = new Map<Category, Map<string, { count: number; example: string }>>();
  /** Context printed under the table (gateway log lines, the inbox state): counts nothing. */
  readonly notes: string[] = [];

  add(category: Category, kind: string, example: string): void {
    this.counts[category] += 1;
    let byKind = this.kinds.get(category);
    if (byKind === undefined) {
      byKind = new Map();
      this.kinds.set(category, byKind);
    }
    const k = clip(kind, 120);
    const entry = byKind.get(k);
    if (entry === undefined) byKind.set(k, { count: 1, example: clip(example, 200) });
    else entry.count += 1;
  }

  /** For each non-zero counter, its most frequent kinds (five by default) with an example each. */
  table(kindsShown = 5): string[] {
    const lines: string[] = [];
    for (const category of CATEGORIES) {
      const byKind = this.kinds.get(category);
      if (this.counts[category] === 0 || byKind === undefined) continue;
      lines.push(`${category}: ${this.counts[category]} (${byKind.size} kinds)`);
      const top = [...byKind.entries()]
        .sort((a, b) => b[1].count - a[1].count)
        .slice(0, kindsShown);
      for (const [kind, { count, example }] of top) {
        lines.push(`  ${String(count).padStart(6)}  ${kind}`);
        lines.push(`          e.g. ${example}`);
      }
    }
    if (this.notes.length > 0) lines.push("notes:", ...this.notes.map((n) => `  ${clip(n, 240)}`));
    return lines;
  }

  line(inputs: number): string {
    const c = this.counts;
    return `fuzz: inputs=${inputs} crashes=${c.crashes} server_errors=${c.server_errors} unquarantined=${c.unquarantined} stuck=${c.stuck}`;
  }

  failed(): boolean {
    return CATEGORIES.some((c) => this.counts[c] > 0);
  }
}
