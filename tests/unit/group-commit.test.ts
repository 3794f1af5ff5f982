import { describe, expect, it } from "vitest";
import { GroupCommit } from "../../src/delivery/group-commit.ts";

describe("GroupCommit", () => {
  it("commits items added while a commit runs together in the next one", async () => {
    const groups: number[][] = [];
    const commits = new GroupCommit<number>(async (items) => {
      groups.push(items);
      await new Promise((resolve) => setTimeout(resolve, 5));
    });
    await Promise.all([1, 2, 3, 4].map((n) => commits.add(n)));
    expect(groups).toEqual([[1], [2, 3, 4]]);
  });

  it("fails only the item that fails alone when its group fails", async () => {
    const commits = new GroupCommit<number>(async (items) => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (items.includes(3)) throw new Error("bad item");
    });
    const results = await Promise.allSettled([1, 2, 3, 4].map((n) => commits.add(n)));
    expect(results.map((r) => r.status)).toEqual([
      "fulfilled",
      "fulfilled",
      "rejected",
      "fulfilled",
    ]);
  });

  it("fails a whole group at once when its failure says nothing about the items (failsAll)", async () => {
    const calls: number[][] = [];
    const unreachable = new Error("the database is unreachable");
    const commits = new GroupCommit<number>(
      async (items) => {
        calls.push(items);
        await new Promise((resolve) => setTimeout(resolve, 1));
        if (items.length > 1 || items[0] !== 1) throw unreachable;
      },
      500,
      (err) => err === unreachable,
    );
    const results = await Promise.allSettled([1, 2, 3, 4].map((n) => commits.add(n)));
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "rejected", "rejected"]);
    // The group [2, 3, 4] was tried once, not each item again alone.
    expect(calls).toEqual([[1], [2, 3, 4]]);
  });

  it("keeps groups within the maximum size", async () => {
    const sizes: number[] = [];
    const commits = new GroupCommit<number>(async (items) => {
      sizes.push(items.length);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }, 2);
    await Promise.all([1, 2, 3, 4, 5].map((n) => commits.add(n)));
    expect(sizes).toEqual([1, 2, 2]);
  });
});
