import { Type, type Static } from 'typebox';
import { commonFields } from '../common/manifest.js';

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
    ...commonFields,
    task: Type.Literal('voice-activity'),
    input: AudioInput,
    labels: Type.Array(Type.String(), { minItems: 1, default: ['speech'] }),
    vad: VadSection,
  },
  { additionalProperties: false },
);

export type VoiceActivityManifest = Static<typeof VoiceActivityManifestSchema>;
