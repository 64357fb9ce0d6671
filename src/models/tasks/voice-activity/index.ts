import { Type } from 'typebox';
import { defineTask } from '../task.js';
import { VoiceActivityManifestSchema } from './manifest.js';
import { framedModel } from './graph.js';
import { voiceActivity } from './pipeline.js';

const Segment = Type.Object({ start_ms: Type.Number(), end_ms: Type.Number() });

export const voiceActivityTask = defineTask({
  name: 'voice-activity',
  summary: 'A WAV file in, its speech segments out (a stateful Silero-style model run frame by frame).',
  manifest: VoiceActivityManifestSchema,
  answer: { segments: Type.Array(Segment), duration_ms: Type.Number() },
  create: voiceActivity,
  // speech or not, per frame
  gate: { metric: 'decision-agreement', measure: 'decision', threshold: (m) => m.vad.threshold },
  cost: { sampleRate: (m) => m.input.sampleRate },
  pipelineGraph: (model, m) => framedModel(model, m.output.name),
});
