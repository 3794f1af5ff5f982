/**
 * Group commit: while one commit runs, further items queue and go together in the next one, so
 * concurrent callers share transactions. Should a group fail, each of its items is committed
 * alone, so one bad item fails only its own caller; but a failure that says nothing about the
 * items (`failsAll`: the database unreachable) fails the whole group at once, instead of having
 * each item wait as long again, one after the other.
 */
export class GroupCommit<T> {
  private queue: Array<{ item: T; resolve: () => void; reject: (err: unknown) => void }> = [];
  private flushing = false;

  constructor(
    private readonly commit: (items: T[]) => Promise<void>,
    private readonly maxGroup = 500,
    private readonly failsAll: (err: unknown) => boolean = () => false,
  ) {}

  add(item: T): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const group = this.queue.splice(0, this.maxGroup);
        try {
          await this.commit(group.map((g) => g.item));
          for (const g of group) g.resolve();
        } catch (err) {
          if (group.length === 1 || this.failsAll(err)) {
            for (const g of group) g.reject(err);
            continue;
          }
          for (const g of group) await this.commit([g.item]).then(g.resolve, g.reject);
        }
      }
    } finally {
      this.flushing = false;
    }
  }
}
