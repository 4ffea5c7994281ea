// AudioWorklet processor: microphone samples -> 16 kHz PCM16 frames.
//
// Runs on the audio rendering thread. Downmixes to mono, resamples with a
// windowed-sinc low-pass (the context usually runs at 44.1 or 48 kHz), and
// posts Int16Array frames of `frameMs` to the page, plus a level reading about
// every 50 ms for the meter. A {type: "flush"} message posts the partial frame
// and answers {type: "flushed"}.

const PHASES = 256; // resolution of the fractional delay table
const ZEROS = 8; // sinc zero crossings on each side at the lower rate

class Pcm16Writer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    this.outRate = opts.targetRate || 16000;
    this.ratio = sampleRate / this.outRate; // input samples per output sample
    this.frame = new Int16Array(Math.round((this.outRate * (opts.frameMs || 40)) / 1000));
    this.fill = 0;
    this.levelEvery = Math.round(sampleRate * 0.05);
    this.levelCount = 0;
    this.levelSum = 0;
    this.levelPeak = 0;
    this.setupResampler();
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === "flush") {
        if (this.fill) this.emit(this.fill);
        this.port.postMessage({ type: "flushed" });
      }
    };
  }

  setupResampler() {
    const r = this.ratio;
    this.bypass = Math.abs(r - 1) < 1e-9;
    if (this.bypass) return;
    // Cut off a little below the lower Nyquist so speech up to ~7 kHz survives.
    const fc = (0.5 * 0.92) / Math.max(1, r); // cycles per input sample
    this.half = Math.ceil(ZEROS * Math.max(1, r)); // taps each side
    const taps = 2 * this.half;
    this.table = new Float32Array(PHASES * taps);
    for (let p = 0; p < PHASES; p++) {
      const frac = p / PHASES;
      for (let j = 0; j < taps; j++) {
        const d = j - this.half + 1 - frac; // distance from the output instant
        const x = 2 * fc * d;
        const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
        const w = 0.42 + 0.5 * Math.cos((Math.PI * d) / this.half) + 0.08 * Math.cos((2 * Math.PI * d) / this.half);
        this.table[p * taps + j] = 2 * fc * sinc * (Math.abs(d) < this.half ? w : 0);
      }
    }
    // History of input samples; starts with `half` zeros so output 0 sits at input 0.
    this.buf = new Float32Array(4096);
    this.len = this.half;
    this.pos = this.half; // output instant, in buf coordinates
  }

  push(sample) {
    const v = Math.max(-1, Math.min(1, sample));
    this.frame[this.fill++] = v < 0 ? v * 0x8000 : v * 0x7fff;
    if (this.fill === this.frame.length) this.emit(this.fill);
  }

  emit(n) {
    const out = this.frame.slice(0, n);
    this.port.postMessage({ type: "frame", pcm: out }, [out.buffer]);
    this.fill = 0;
  }

  resample(input) {
    if (this.len + input.length > this.buf.length) {
      const bigger = new Float32Array((this.len + input.length) * 2);
      bigger.set(this.buf.subarray(0, this.len));
      this.buf = bigger;
    }
    this.buf.set(input, this.len);
    this.len += input.length;
    const taps = 2 * this.half;
    while (Math.floor(this.pos) + this.half < this.len) {
      const base = Math.floor(this.pos);
      const phase = Math.min(PHASES - 1, Math.round((this.pos - base) * PHASES));
      const row = phase * taps;
      const first = base - this.half + 1;
      let acc = 0;
      for (let j = 0; j < taps; j++) acc += this.buf[first + j] * this.table[row + j];
      this.push(acc);
      this.pos += this.ratio;
    }
    // Drop history that no future output needs.
    const keepFrom = Math.floor(this.pos) - this.half + 1;
    if (keepFrom > 2048) {
      this.buf.copyWithin(0, keepFrom, this.len);
      this.len -= keepFrom;
      this.pos -= keepFrom;
    }
  }

  meter(input) {
    for (let i = 0; i < input.length; i++) {
      const v = input[i];
      this.levelSum += v * v;
      const a = v < 0 ? -v : v;
      if (a > this.levelPeak) this.levelPeak = a;
    }
    this.levelCount += input.length;
    if (this.levelCount >= this.levelEvery) {
      const rms = Math.sqrt(this.levelSum / this.levelCount);
      this.port.postMessage({ type: "level", rms, peak: this.levelPeak });
      this.levelCount = 0;
      this.levelSum = 0;
      this.levelPeak = 0;
    }
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    let mono = channels[0];
    if (channels.length > 1) {
      mono = new Float32Array(mono.length);
      for (const ch of channels) for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / channels.length;
    }
    this.meter(mono);
    if (this.bypass) for (let i = 0; i < mono.length; i++) this.push(mono[i]);
    else this.resample(mono);
    return true;
  }
}

registerProcessor("pcm16-writer", Pcm16Writer);
