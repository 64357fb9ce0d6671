// Audio in the browser: decoding a file for its waveform, recording the microphone, and writing 16-bit PCM WAV
// (what the server's voice-activity models take; a MediaRecorder gives WebM/Opus, which they do not).

/** The rate recordings are written at: the voice-activity models' own, so the server has nothing to resample. */
const RECORD_RATE = 16000;

/** Decodes any audio the browser can read into mono samples at `rate` (resampled by the browser). */
export async function decodeMono(bytes, rate = RECORD_RATE) {
  const ctx = new OfflineAudioContext(1, 1, rate);
  const buffer = await ctx.decodeAudioData(bytes.slice(0));
  const mono = new Float32Array(buffer.length);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const channel = buffer.getChannelData(c);
    for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / buffer.numberOfChannels;
  }
  return { samples: mono, rate };
}

/** A mono 16-bit PCM WAV file (RIFF, 44-byte header) holding `samples` in [-1, 1]. */
export function encodeWav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const ascii = (at, s) => [...s].forEach((ch, i) => view.setUint8(at + i, ch.charCodeAt(0)));
  ascii(0, 'RIFF');
  view.setUint32(4, 36 + samples.length * 2, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  ascii(36, 'data');
  view.setUint32(40, samples.length * 2, true);
  samples.forEach((x, i) => view.setInt16(44 + i * 2, Math.round(Math.max(-1, Math.min(1, x)) * 32767), true));
  return new Blob([view.buffer], { type: 'audio/wav' });
}

/**
 * Starts recording the microphone; `stop()` on the result resolves with the recording as a WAV blob. The browser
 * asks the user first, and only on https or localhost.
 */
export async function startRecording() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.ondataavailable = (e) => chunks.push(e.data);
  const stopped = new Promise((resolve) => (recorder.onstop = resolve));
  recorder.start();
  return {
    async stop() {
      recorder.stop();
      await stopped;
      stream.getTracks().forEach((t) => t.stop());
      const recorded = await new Blob(chunks, { type: recorder.mimeType }).arrayBuffer();
      const { samples, rate } = await decodeMono(recorded);
      return encodeWav(samples, rate);
    },
  };
}
