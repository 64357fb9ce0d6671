/** A real input of each task, as a client sends it: the file (from the repository root) and its content type. */
export const taskInputs: Record<string, { readonly file: string; readonly type: string }> = {
  ocr: { file: 'test/fixtures/photos/page.png', type: 'image/png' },
  'image-classification': { file: 'test/fixtures/text-lines/line-03.png', type: 'image/png' },
  'text-recognition': { file: 'test/fixtures/text-lines/line-03.png', type: 'image/png' },
  'face-detection': { file: 'test/fixtures/photos/astronaut.jpg', type: 'image/jpeg' },
  'voice-activity': { file: 'test/fixtures/audio/speech-16k-mono.wav', type: 'audio/wav' },
  'language-id': { file: 'bench/inputs/sentence.txt', type: 'text/plain' },
};
