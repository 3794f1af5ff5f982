/**
 * Preloaded into the fault suite's gateway processes (`node --import`): their stdin is a pipe
 * from the test process, and when it closes — the test process is gone, even killed with
 * SIGKILL, when no exit handler of its could run — the gateway kills itself, so that none
 * outlives the suite. Nothing else of the gateway changes.
 */
const die = (): void => {
  process.kill(process.pid, "SIGKILL");
};
process.stdin.once("end", die);
process.stdin.once("error", die);
process.stdin.resume();
