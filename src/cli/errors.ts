// CLI error contract (design.md): exit 1 with one line for a user error (what was wrong, what to do),
// exit 2 for an internal error. Never a stack trace for bad input.

/** Errors of the engine's layers that are about the user's input (a bad ONNX file, a bad dataset). */
const USER_ERROR_NAMES = new Set(['UserError', 'GpuError', 'CommanderError', 'OnnxError', 'DataError', 'CheckpointError']);

/** An error caused by the user's input or environment; its message is shown as one line. */
export class UserError extends Error {
  override name = 'UserError';
}

export function reportAndExit(e: unknown): never {
  const err = e instanceof Error ? e : new Error(String(e));
  if (err instanceof UserError || USER_ERROR_NAMES.has(err.name)) {
    process.stderr.write(`wgtrain: ${err.message.split('\n')[0]}\n`);
    process.exit(1);
  }
  process.stderr.write(`wgtrain: internal error: ${err.message}\n`);
  if (process.env.WGTRAIN_DEBUG) process.stderr.write(`${err.stack}\n`);
  else process.stderr.write('(set WGTRAIN_DEBUG=1 for the stack trace, and please report it)\n');
  process.exit(2);
}
