import { Type, type Static } from 'typebox';
import { commonFields, FileRef } from '../common/manifest.js';

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

/** A manifest for `language-id`: `input` says how much text is accepted and which n-grams are the features. */
export const TextManifestSchema = Type.Object(
  { ...commonFields, task: Type.Literal('language-id'), input: TextInput },
  { additionalProperties: false },
);

export type TextManifest = Static<typeof TextManifestSchema>;
