/** Encodes interleaved float samples in [-1, 1] as a WAV file, for tests of the decoder and its errors. */
export function encodeWav(
  channels: Float32Array[],
  sampleRate: number,
  { format = 'pcm', bits = 16 }: { format?: 'pcm' | 'float'; bits?: number } = {},
): Buffer {
  const frames = channels[0].length;
  const width = bits / 8;
  const data = Buffer.alloc(frames * channels.length * width);
  let at = 0;
  for (let i = 0; i < frames; i++) {
    for (const ch of channels) {
      const v = ch[i];
      if (format === 'float') {
        if (bits === 32) data.writeFloatLE(v, at);
        else data.writeDoubleLE(v, at);
      } else if (bits === 8) data.writeUInt8(Math.round(v * 127) + 128, at);
      else if (bits === 16) data.writeInt16LE(Math.round(v * 32767), at);
      else if (bits === 24) data.writeIntLE(Math.round(v * 8388607), at, 3);
      else data.writeInt32LE(Math.round(v * 2147483647), at);
      at += width;
    }
  }
  return wavFile({ tag: format === 'float' ? 3 : 1, channels: channels.length, sampleRate, bits }, data);
}

/** A WAV file from raw header fields and data bytes (`dataSize` may lie). */
export function wavFile(
  f: { tag: number; channels: number; sampleRate: number; bits: number },
  data: Buffer,
  dataSize = data.length,
): Buffer {
  const fmt = Buffer.alloc(16);
  fmt.writeUInt16LE(f.tag, 0);
  fmt.writeUInt16LE(f.channels, 2);
  fmt.writeUInt32LE(f.sampleRate, 4);
  fmt.writeUInt32LE((f.sampleRate * f.channels * f.bits) / 8, 8);
  fmt.writeUInt16LE((f.channels * f.bits) / 8, 12);
  fmt.writeUInt16LE(f.bits, 14);
  const chunk = (id: string, body: Buffer, size = body.length) => {
    const head = Buffer.alloc(8);
    head.write(id, 0, 'latin1');
    head.writeUInt32LE(size, 4);
    return Buffer.concat([head, body, body.length % 2 ? Buffer.alloc(1) : Buffer.alloc(0)]);
  };
  const body = Buffer.concat([Buffer.from('WAVE'), chunk('fmt ', fmt), chunk('data', data, dataSize)]);
  const riff = Buffer.alloc(8);
  riff.write('RIFF', 0, 'latin1');
  riff.writeUInt32LE(body.length, 4);
  return Buffer.concat([riff, body]);
}
