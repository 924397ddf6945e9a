/**
 * The process runner's log file per unit, `<logDir>/<name>.log`: the unit's stdout and
 * stderr, and the runner's notes about it, each line prefixed `flotilla: `. Without a
 * log directory output is discarded and notes are dropped.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export class UnitLogs {
  constructor(private readonly logDir?: string) {
    if (this.logDir) fs.mkdirSync(this.logDir, { recursive: true });
  }

  /** A file descriptor appending to the unit's log, or undefined when logs are off. */
  open(name: string): number | undefined {
    return this.logDir ? fs.openSync(path.join(this.logDir, `${name}.log`), 'a') : undefined;
  }

  /** Appends a note from the runner; never throws. */
  note(name: string, message: string): void {
    if (!this.logDir) return;
    try {
      fs.appendFileSync(path.join(this.logDir, `${name}.log`), `flotilla: ${message}\n`);
    } catch {
      /* logging must never break a unit */
    }
  }
}
