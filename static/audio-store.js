// The audio captured in this tab: kept so it can be resent after a dropped
// connection and downloaded as a WAV file if the server never finishes.

export class AudioStore {
  /**
   * @param {number} sampleRate  rate of the PCM16 frames pushed in
   * @param {number} keepSeconds  audio older than this may be discarded once
   *                              it is no longer needed for a resend
   */
  constructor(sampleRate, keepSeconds = 3 * 3600) {
    this.sampleRate = sampleRate;
    this.keepSamples = keepSeconds * sampleRate;
    this.chunks = []; // [{offset, pcm: Int16Array}], contiguous
    this.total = 0; // samples ever pushed
  }

  get seconds() {
    return this.total / this.sampleRate;
  }

  /** First sample still held. */
  get first() {
    return this.chunks.length ? this.chunks[0].offset : this.total;
  }

  push(pcm) {
    this.chunks.push({ offset: this.total, pcm });
    this.total += pcm.length;
  }

  /** Forget audio before `sample` when over the retention limit. */
  trim(neededFrom) {
    const limit = Math.min(neededFrom, this.total - this.keepSamples);
    while (this.chunks.length && this.chunks[0].offset + this.chunks[0].pcm.length <= limit) this.chunks.shift();
  }

  /** Frames of at most `frameSamples` covering [from, total). */
  *framesFrom(from, frameSamples) {
    let pending = [];
    let pendingLen = 0;
    for (const { offset, pcm } of this.chunks) {
      if (offset + pcm.length <= from) continue;
      const part = offset < from ? pcm.subarray(from - offset) : pcm;
      pending.push(part);
      pendingLen += part.length;
      while (pendingLen >= frameSamples) {
        const joined = concat(pending, pendingLen);
        yield joined.slice(0, frameSamples);
        const rest = joined.subarray(frameSamples);
        pending = rest.length ? [rest] : [];
        pendingLen = rest.length;
      }
    }
    if (pendingLen) yield concat(pending, pendingLen).slice();
  }

  /** Everything held, as a 16-bit mono WAV Blob. */
  toWav() {
    const held = this.total - this.first;
    const header = new DataView(new ArrayBuffer(44));
    const ascii = (at, s) => [...s].forEach((c, i) => header.setUint8(at + i, c.charCodeAt(0)));
    ascii(0, "RIFF");
    header.setUint32(4, 36 + held * 2, true);
    ascii(8, "WAVE");
    ascii(12, "fmt ");
    header.setUint32(16, 16, true);
    header.setUint16(20, 1, true); // PCM
    header.setUint16(22, 1, true); // mono
    header.setUint32(24, this.sampleRate, true);
    header.setUint32(28, this.sampleRate * 2, true);
    header.setUint16(32, 2, true);
    header.setUint16(34, 16, true);
    ascii(36, "data");
    header.setUint32(40, held * 2, true);
    // Int16Array is platform-endian; every browser platform is little-endian.
    return new Blob([header, ...this.chunks.map((c) => c.pcm)], { type: "audio/wav" });
  }
}

function concat(parts, length) {
  if (parts.length === 1) return parts[0];
  const out = new Int16Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
