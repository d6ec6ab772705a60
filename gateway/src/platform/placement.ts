// Where `para serve`'s engine workers run: one per GPU, each child seeing only its own GPU through
// CUDA_VISIBLE_DEVICES (so inside it the device is plain `cuda`), several per GPU only when --workers-per-gpu
// asks for it. GPUs are the --gpus list, else the CUDA_VISIBLE_DEVICES this process was given, else what
// nvidia-smi lists. Off CUDA (cpu, mps) nothing is placed and the CPU threads are split between the workers.
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { CliError } from './args.js';

export interface PlacementRequest {
  /** --workers; undefined: one per GPU slot on CUDA, else 1. */
  workers?: number;
  /** --device; undefined lets each worker pick (cuda when it has one). */
  device?: string;
  /** --gpus: GPU ids or UUIDs as CUDA_VISIBLE_DEVICES names them. */
  gpus?: string[];
  /** --workers-per-gpu (default 1). */
  perGpu?: number;
}

export interface Placement {
  /** The device flag each worker gets (undefined: the worker's default). */
  device: string | undefined;
  /** One entry per worker: the environment it adds to this process's. */
  workers: { gpu: string | undefined; env: Record<string, string> }[];
}

/** GPUs nvidia-smi lists, by index; none when it is not installed (a machine without NVIDIA GPUs). */
export function detectGpus(): string[] {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=index', '--format=csv,noheader'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
    return out.split('\n').map((l) => l.trim()).filter(Boolean);
  } catch {
    return [];
  }
}

const isCuda = (device: string | undefined) => device === 'cuda';

export function placeWorkers(request: PlacementRequest, env: NodeJS.ProcessEnv = process.env, detect: () => string[] = detectGpus): Placement {
  const perGpu = request.perGpu ?? 1;
  if (request.device?.startsWith('cuda:')) {
    throw new CliError(`--device ${request.device}: give --device cuda and choose GPUs with --gpus (each worker sees only its own)`);
  }
  if (request.gpus && request.device !== undefined && !isCuda(request.device)) {
    throw new CliError(`--gpus places workers on GPUs; it does not go with --device ${request.device}`);
  }
  if (request.perGpu !== undefined && request.device !== undefined && !isCuda(request.device)) {
    throw new CliError(`--workers-per-gpu places workers on GPUs; it does not go with --device ${request.device}`);
  }
  const offCuda = request.device !== undefined && !isCuda(request.device);
  const visible = env.CUDA_VISIBLE_DEVICES?.split(',').map((g) => g.trim()).filter(Boolean);
  const gpus = offCuda ? [] : (request.gpus ?? visible ?? detect());
  if (gpus.length === 0) {
    if (isCuda(request.device)) {
      throw new CliError('--device cuda, but no GPU is visible (nvidia-smi lists none, or CUDA_VISIBLE_DEVICES is empty); name them with --gpus');
    }
    if (request.gpus || request.perGpu !== undefined) throw new CliError('no GPU to place workers on: --gpus and --workers-per-gpu need CUDA');
    const count = request.workers ?? 1;
    return { device: request.device, workers: Array.from({ length: count }, () => ({ gpu: undefined, env: cpuThreads(count, env) })) };
  }
  if (new Set(gpus).size !== gpus.length) throw new CliError(`--gpus names a GPU twice: ${gpus.join(',')}`);
  const capacity = gpus.length * perGpu;
  const count = request.workers ?? capacity;
  if (count > capacity) {
    const each = perGpu === 1 ? 'one worker per GPU' : `${perGpu} workers per GPU`;
    throw new CliError(
      `${count} workers on ${gpus.length} GPU${gpus.length === 1 ? '' : 's'} (${gpus.join(',')}) at ${each}: ask for --workers-per-gpu ${Math.ceil(count / gpus.length)} to share GPUs, or fewer workers`,
    );
  }
  // Worker i on GPU i mod n: the first n workers take one GPU each before any GPU gets a second.
  return {
    device: 'cuda',
    workers: Array.from({ length: count }, (_, i) => {
      const gpu = gpus[i % gpus.length]!;
      return { gpu, env: { CUDA_VISIBLE_DEVICES: gpu } };
    }),
  };
}

/** Several workers on one CPU would each start a thread per core and fight over them: split the cores. */
function cpuThreads(count: number, env: NodeJS.ProcessEnv): Record<string, string> {
  if (count <= 1 || env.OMP_NUM_THREADS) return {};
  return { OMP_NUM_THREADS: String(Math.max(1, Math.floor(availableParallelism() / count))) };
}
