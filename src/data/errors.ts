// The data layer's user-facing error. Every bad dataset layout (missing folder, no classes, an empty
// class, a split manifest whose files are gone…) is a DataError whose message is ONE line saying what
// was wrong and what to do, so the CLI can print it as is and exit 1 (design.md's error contract).
//
// NOTE: DataError extends the CLI's UserError, so `reportAndExit` already treats it as a user error.
// That module has no Node-only code at import time, so this stays browser-safe.

import { UserError } from '../cli/errors.js';

export class DataError extends UserError {
  override name = 'DataError';
}

/** The first line of an error's message: what warnings and skip lists show. */
export function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}
