// The benchmark suite (`wgtrain bench`): kernel cases from VGG16/ResNet34 layers, validated against
// the CPU references and timed; roofline probes; end-to-end training steps; reports and comparisons.

export { runBench, measureCase, type BenchOptions } from './run.js';
export { suiteConfig, kernelCases, type SuiteConfig } from './suite.js';
export { measureRoofline, raiseRoofline, roofPercent, type RooflineOptions } from './roofline.js';
export { timeLaunch, timingMethod, median, type TimeOptions, type Timed } from './timing.js';
export { measureE2e, measureE2eAll, e2eId, SmallCnn, type E2eCase, type E2eModel, type E2eOptions } from './e2e.js';
export { toJson, parseReport, compareReports, formatReport, formatComparison, kernelTable, e2eTable, geomean, table, type Comparison, type Ratio } from './report.js';
export { reportHtml, barChart } from './html.js';
export * from './kernels.js';
export * from './shapes.js';
export * from './types.js';
export { compare, relErr, spread, take, takeRows } from './validate.js';
