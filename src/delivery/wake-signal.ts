/**
 * The one signal that work is waiting: the submitter (a new message in the outbox) and the inbox
 * (a receipt to send) raise it; the dispatcher waits on it between passes instead of polling.
 */
export class WakeSignal {
  private raised = false;
  private waiter: (() => void) | undefined;

  raise(): void {
    this.raised = true;
    this.waiter?.();
  }

  /** Was it raised since the last call? Clears it. */
  take(): boolean {
    const was = this.raised;
    this.raised = false;
    return was;
  }

  /** Resolves when the signal is raised, or after `ms` at the latest. */
  wait(ms: number): Promise<void> {
    if (this.raised) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiter = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiter = done;
    });
  }
}
