// Shape tables: the layers of VGG16 and ResNet34 (torchvision, names as in their state_dicts) at a
// given input size and batch. The suite benchmarks the distinct shapes; `count` says how many layers
// of the network share a shape (a network-weighted summary can multiply by it).
//
//   VGG16     13 conv3×3 pad 1 in 5 stages of s, s/2, s/4, s/8, s/16 pixels; a 2×2 max-pool ends each
//             stage; classifier 25088 → 4096 → 4096 → classes.
//   ResNet34  conv1 7×7 s2 pad 3 → max-pool 3×3 s2 pad 1 → 4 stages of BasicBlocks (3, 4, 6, 3 blocks;
//             64, 128, 256, 512 channels at s/4 … s/32); the first block of stages 2-4 halves the
//             resolution with a stride-2 conv3×3 and a 1×1 stride-2 downsample; BatchNorm after
//             every conv; fc 512 → classes.

export interface ConvLayer {
  model: 'vgg16' | 'resnet34';
  /** torchvision parameter prefix, e.g. 'features.2' or 'layer2.0.downsample.0'. */
  name: string;
  N: number; C: number; H: number; W: number;
  K: number; R: number; stride: number; pad: number;
  count: number;
}

export interface PoolLayer {
  model: 'vgg16' | 'resnet34';
  name: string;
  N: number; C: number; H: number; W: number;
  kernel: number; stride: number; pad: number;
}

/** A channel count at a resolution (BatchNorm, ReLU). */
export interface ActLayer { model: 'vgg16' | 'resnet34'; name: string; N: number; C: number; H: number; W: number; count: number }

/** Output size of a conv/pool axis: ⌊(H + 2·pad − R)/stride⌋ + 1. */
export const outSize = (h: number, r: number, stride: number, pad: number) => Math.floor((h + 2 * pad - r) / stride) + 1;

/** The 9 distinct conv shapes of VGG16's 13 conv layers at input size s. */
export function vgg16Convs(s: number, N: number): ConvLayer[] {
  // [name, C, K, stage, count]: stage i runs at s / 2^i.
  const rows: [string, number, number, number, number][] = [
    ['features.0', 3, 64, 0, 1], ['features.2', 64, 64, 0, 1],
    ['features.5', 64, 128, 1, 1], ['features.7', 128, 128, 1, 1],
    ['features.10', 128, 256, 2, 1], ['features.12', 256, 256, 2, 2],
    ['features.17', 256, 512, 3, 1], ['features.19', 512, 512, 3, 2],
    ['features.24', 512, 512, 4, 3],
  ];
  return rows.map(([name, C, K, stage, count]) => {
    const H = stageSize(s, stage);
    return { model: 'vgg16', name, N, C, H, W: H, K, R: 3, stride: 1, pad: 1, count };
  });
}

/** VGG16's five 2×2 stride-2 max-pools (features.4, 9, 16, 23, 30), one at the end of each stage. */
export function vgg16Pools(s: number, N: number): PoolLayer[] {
  const rows: [string, number, number][] = [['features.4', 64, 0], ['features.9', 128, 1], ['features.16', 256, 2], ['features.23', 512, 3], ['features.30', 512, 4]];
  return rows.map(([name, C, stage]) => {
    const H = stageSize(s, stage);
    return { model: 'vgg16', name, N, C, H, W: H, kernel: 2, stride: 2, pad: 0 };
  });
}

/** ReLU inputs of VGG16: one per stage (the first conv's output). */
export function vgg16Acts(s: number, N: number): ActLayer[] {
  const rows: [string, number, number, number][] = [['features.1', 64, 0, 2], ['features.6', 128, 1, 2], ['features.11', 256, 2, 3], ['features.18', 512, 3, 3], ['features.25', 512, 4, 3]];
  return rows.map(([name, C, stage, count]) => ({ model: 'vgg16', name, N, C, H: stageSize(s, stage), W: stageSize(s, stage), count }));
}

/** The 11 distinct conv shapes of ResNet34's 36 conv layers at input size s. */
export function resnet34Convs(s: number, N: number): ConvLayer[] {
  const c1 = outSize(s, 7, 2, 3);
  const out: ConvLayer[] = [{ model: 'resnet34', name: 'conv1', N, C: 3, H: s, W: s, K: 64, R: 7, stride: 2, pad: 3, count: 1 }];
  let H = outSize(c1, 3, 2, 1); // after the max-pool
  out.push({ model: 'resnet34', name: 'layer1.0.conv1', N, C: 64, H, W: H, K: 64, R: 3, stride: 1, pad: 1, count: 6 });
  const stages: [number, number, number][] = [[2, 128, 4], [3, 256, 6], [4, 512, 3]];
  let C = 64;
  for (const [i, K, blocks] of stages) {
    const Ho = outSize(H, 3, 2, 1);
    out.push({ model: 'resnet34', name: `layer${i}.0.conv1`, N, C, H, W: H, K, R: 3, stride: 2, pad: 1, count: 1 });
    out.push({ model: 'resnet34', name: `layer${i}.0.downsample.0`, N, C, H, W: H, K, R: 1, stride: 2, pad: 0, count: 1 });
    out.push({ model: 'resnet34', name: `layer${i}.0.conv2`, N, C: K, H: Ho, W: Ho, K, R: 3, stride: 1, pad: 1, count: 2 * blocks - 1 });
    H = Ho; C = K;
  }
  return out;
}

/** ResNet34's max-pool (3×3 stride 2 pad 1 on conv1's output). */
export function resnet34Pools(s: number, N: number): PoolLayer[] {
  const H = outSize(s, 7, 2, 3);
  return [{ model: 'resnet34', name: 'maxpool', N, C: 64, H, W: H, kernel: 3, stride: 2, pad: 1 }];
}

/** BatchNorm inputs of ResNet34: bn1 and one per stage. */
export function resnet34Norms(s: number, N: number): ActLayer[] {
  const c1 = outSize(s, 7, 2, 3);
  const out: ActLayer[] = [{ model: 'resnet34', name: 'bn1', N, C: 64, H: c1, W: c1, count: 1 }];
  let H = outSize(c1, 3, 2, 1);
  const stages: [number, number, number][] = [[1, 64, 6], [2, 128, 9], [3, 256, 13], [4, 512, 7]];
  for (const [i, C, count] of stages) {
    if (i > 1) H = outSize(H, 3, 2, 1);
    out.push({ model: 'resnet34', name: `layer${i}.0.bn1`, N, C, H, W: H, count });
  }
  return out;
}

/** Spatial size at VGG stage i (each 2×2 pool halves it, flooring as PyTorch does). */
function stageSize(s: number, stage: number): number {
  let h = s;
  for (let i = 0; i < stage; i++) h = Math.floor(h / 2);
  return Math.max(1, h);
}

/** Dense layers: [name, batch rows, in features, out features]. */
export interface DenseLayer { model: 'vgg16' | 'resnet34'; name: string; N: number; C: number; K: number }

export function denseLayers(N: number, classes = 1000): DenseLayer[] {
  return [
    { model: 'vgg16', name: 'classifier.3', N, C: 4096, K: 4096 },
    { model: 'resnet34', name: 'fc', N, C: 512, K: classes },
  ];
}
