// The `wgtrain` command line. Thin: parses argv with commander and calls one function per command.

import { Command, CommanderError } from 'commander';
import { VERSION } from '../version.js';
import { infoCommand } from './info.js';
import { reportAndExit } from './errors.js';
import { finetuneCommand } from './finetune.js';
import { lrFindCommand } from './lrfind.js';
import { evaluateCommand, predictCommand } from './predict.js';
import { inspectCommand } from './inspect.js';
import { registerExplain } from './explain.js';
import { registerWeights } from './weights.js';
import { registerBench } from './bench.js';

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

  program.command('finetune')
    .description('fine-tune an ONNX model on an image folder (no flags: the bundled demo)')
    .option('--model <file>', 'ONNX model to start from (default: the demo model in weights/)')
    .option('--data <dir>', 'image folder, one subfolder per class (default: examples/fashion5)')
    .option('--out <dir>', 'output folder (default: ./wgtrain-out)')
    .option('--epochs <n>', 'epochs with the base unfrozen (default 3)')
    .option('--freeze-epochs <n>', 'epochs training only the new head first (default 1)')
    .option('--lr <x|a:b>', "fastai base LR (default 2e-3), or the unfrozen stage's range low:high")
    .option('--batch <n|auto>', 'batch size, or auto: the largest that fits, per stage (default 32)')
    .option('--memory-budget <MiB>', 'GPU memory --batch auto may plan for (default 2048)')
    .option('--size <px[,px...]>', "input size; several = progressive resizing (default: the model's)")
    .option('--mode <finetune|features>', 'staged fine-tuning, or feature extraction with a cached base (default finetune)')
    .option('--min-scale <f>', "RandomResizedCrop's smallest crop area (default: the model's, else 0.35)")
    .option('--no-augment', 'train on whole, unflipped images (no random crops or flips)')
    .option('--unfreeze <all|K>', 'after the head stage unfreeze all groups or the top K (default all)')
    .option('--val-split <f>', 'validation fraction, stratified (default 0.2)')
    .option('--seed <n>', 'seed for split, shuffling, augmentation, new head (default 42)')
    .option('--resume <dir>', 'continue an interrupted run from its output folder')
    .option('--no-replay', 'run every step eagerly (no captured-step replay)')
    .option('--trace <file>', 'write a Chrome trace (Perfetto, chrome://tracing): every kernel of the first training steps with layer, shapes, FLOPs, bytes, GPU time')
    .option('--trace-steps <n|all>', 'steps traced per stage with --trace (default 3)')
    .option('--autotune <auto|cached|off>', 'kernel autotuning: measure new shape classes once and cache the winners per adapter (auto, default), use only cached ones, or heuristics only')
    .option('--json', 'print one JSON summary on stdout')
    .action(finetuneCommand);

  program.command('lr-find')
    .description("fastai's LR finder on the new head (base frozen): suggestions and a plot")
    .option('--model <file>', 'ONNX model (default: the demo model)')
    .option('--data <dir>', 'image folder (default: examples/fashion5)')
    .option('--out <dir>', 'where lr-find.svg/json go (default ./wgtrain-out)')
    .option('--batch <n>', 'batch size (default 32)')
    .option('--iterations <n>', 'iterations of the sweep (default 100)')
    .option('--unfrozen', 'sweep with every layer trainable')
    .option('--trace <file>', 'write a Chrome trace of the first sweep steps (see finetune --trace)')
    .option('--trace-steps <n|all>', 'steps traced with --trace (default 3)')
    .option('--val-split <f>', 'validation fraction held out (default 0.2)')
    .option('--seed <n>', 'seed (default 42)')
    .option('--autotune <auto|cached|off>', 'kernel autotuning: measure new shape classes once and cache the winners per adapter (auto, default), use only cached ones, or heuristics only')
    .option('--json', 'print one JSON object')
    .action(lrFindCommand);

  program.command('predict')
    .description('class probabilities for images, from a fine-tuned model.onnx')
    .requiredOption('--model <file>', 'model.onnx written by wgtrain finetune')
    .argument('<images...>', 'image files')
    .option('--top <k>', 'classes to show per image (default 3)')
    .option('--json', 'print one JSON array')
    .action((images: string[], flags) => predictCommand(images, flags));

  program.command('evaluate')
    .description('accuracy, per-class precision/recall and confusion matrix on an image folder')
    .requiredOption('--model <file>', 'model.onnx written by wgtrain finetune')
    .requiredOption('--data <dir>', 'image folder with (a subset of) the model\'s classes')
    .option('--batch <n>', 'batch size (default 32)')
    .option('--out <file>', 'also write the report as JSON')
    .option('--json', 'print one JSON object')
    .action(evaluateCommand);

  registerExplain(program);

  program.command('inspect')
    .description('ops, shapes, parameters, layer groups and family of an ONNX model')
    .argument('<model>', 'ONNX file')
    .option('--json', 'print one JSON object')
    .action((path: string, flags) => inspectCommand(path, flags));

  registerWeights(program);
  registerBench(program);

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
