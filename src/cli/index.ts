// The `wgtrain` command line. Thin: parses argv with commander and calls one function per command.

import { Command, CommanderError } from 'commander';
import { VERSION } from '../version.js';
import { infoCommand } from './info.js';
import { reportAndExit } from './errors.js';

export async function main(argv: string[]) {
  const program = new Command();
  program
    .name('wgtrain')
    .description('Fine-tune pretrained CNNs on WebGPU compute shaders (hand-written WGSL kernels).')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showHelpAfterError('(run wgtrain --help for usage)');

  program.command('info')
    .description('show the WebGPU adapter wgtrain will use, its limits and features')
    .option('--json', 'print one JSON object')
    .action(infoCommand);

  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit through here with code 0; usage errors already printed their line.
      process.exit(e.exitCode === 0 ? 0 : 1);
    }
    reportAndExit(e);
  }
}
