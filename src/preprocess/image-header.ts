// An image's size read from its header in a few microseconds, without libvips: what the memory budget needs to
// price a request before anything is decoded (the decoder checks the real size again, and refuses what lies).

/** Steps of the JPEG marker walk before it gives up (a real file reaches its frame header in a few dozen). */
const MAX_JPEG_STEPS = 65_536;

/** Width and height as stored (EXIF orientation not applied: a turned image has the same pixel count). */
export interface StoredSize {
  readonly width: number;
  readonly height: number;
}

/** The stored size of a PNG, JPEG or WebP, or undefined for anything else or a header that cannot be read. */
export function imageHeaderSize(b: Uint8Array): StoredSize | undefined {
  const u16be = (at: number) => (b[at] << 8) | b[at + 1];
  const u16le = (at: number) => b[at] | (b[at + 1] << 8);
  const u24le = (at: number) => b[at] | (b[at + 1] << 8) | (b[at + 2] << 16);
  const u32be = (at: number) => ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
  const ascii = (from: number, to: number) => String.fromCharCode(...b.subarray(from, to));
  const size = (width: number, height: number) => (width > 0 && height > 0 ? { width, height } : undefined);

  // PNG: the signature, then IHDR first (width and height big-endian at 16 and 20)
  if (b.length >= 24 && b[0] === 0x89 && ascii(1, 4) === 'PNG' && ascii(12, 16) === 'IHDR')
    return size(u32be(16), u32be(20));

  // JPEG: walk the marker segments to the first start-of-frame, as libjpeg's next_marker does: bytes between
  // segments that are not a marker (junk, stuffed FF 00, fill FF) are skipped; the walk gives up after
  // MAX_JPEG_STEPS steps, and the caller prices such a file at the most an image may cost
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    let at = 2;
    for (let steps = 0; at + 3 < b.length && steps < MAX_JPEG_STEPS; steps++) {
      if (b[at] !== 0xff || b[at + 1] === 0xff || b[at + 1] === 0x00) {
        at++; // junk, a fill byte, or FF 00: not a marker
        continue;
      }
      const marker = b[at + 1];
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
        at += 2; // markers without a length
        continue;
      }
      if (marker === 0xd9 || marker === 0xda) return undefined; // end of image, or scan data before any frame
      const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
      if (isFrame) return at + 8 < b.length ? size(u16be(at + 7), u16be(at + 5)) : undefined;
      const length = u16be(at + 2);
      if (length < 2) return undefined;
      at += 2 + length;
    }
    return undefined;
  }

  // WebP: RIFF container, first chunk VP8 (lossy), VP8L (lossless) or VP8X (extended, canvas size)
  if (b.length >= 30 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') {
    const chunk = ascii(12, 16);
    if (chunk === 'VP8 ' && b[23] === 0x9d && b[24] === 0x01 && b[25] === 0x2a)
      return size(u16le(26) & 0x3fff, u16le(28) & 0x3fff);
    if (chunk === 'VP8L' && b[20] === 0x2f)
      return size(1 + (b[21] | ((b[22] & 0x3f) << 8)), 1 + ((b[22] >> 6) | (b[23] << 2) | ((b[24] & 0x0f) << 10)));
    if (chunk === 'VP8X') return size(1 + u24le(24), 1 + u24le(27));
  }
  return undefined;
}
