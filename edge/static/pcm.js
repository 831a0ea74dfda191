// Pure audio helpers shared by the capture worklet and the unit tests: a streaming
// windowed-sinc resampler, float -> s16le conversion and a fixed-size chunker.
// No DOM or Web Audio APIs here, so it runs unchanged under node and in an AudioWorklet.

/** Convert float samples in [-1, 1] to signed 16-bit little-endian PCM (clamped). */
export function floatToS16le(samples) {
  const out = new ArrayBuffer(samples.length * 2);
  const view = new DataView(out);
  for (let i = 0; i < samples.length; i++) {
    let s = samples[i];
    if (!(s === s)) s = 0; // NaN
    if (s > 1) s = 1;
    else if (s < -1) s = -1;
    view.setInt16(i * 2, s < 0 ? Math.round(s * 32768) : Math.round(s * 32767), true);
  }
  return out;
}

/** Decode s16le PCM (ArrayBuffer or typed array view) back to an Int16Array (tests, meters). */
export function s16leToInt16(buffer) {
  const bytes = buffer instanceof ArrayBuffer
    ? new Uint8Array(buffer)
    : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Int16Array(bytes.byteLength >> 1);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true);
  return out;
}

/** Peak and RMS of float samples. */
export function levelOf(samples) {
  let peak = 0;
  let sum = 0;
  for (let i = 0; i < samples.length; i++) {
    const a = Math.abs(samples[i]);
    if (a > peak) peak = a;
    sum += samples[i] * samples[i];
  }
  return { peak, rms: samples.length ? Math.sqrt(sum / samples.length) : 0 };
}

/** Map an RMS level to 0..1 on a -60..0 dBFS scale (for a meter). */
export function meterValue(rms) {
  if (!(rms > 0)) return 0;
  const db = 20 * Math.log10(rms);
  return Math.min(1, Math.max(0, (db + 60) / 60));
}

function sinc(x) {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

// Blackman window on t in [-1, 1].
function blackman(t) {
  const u = (t + 1) / 2; // 0..1
  return 0.42 - 0.5 * Math.cos(2 * Math.PI * u) + 0.08 * Math.cos(4 * Math.PI * u);
}

/**
 * Streaming band-limited resampler: windowed-sinc low-pass (cutoff at 0.45 x the lower of the
 * two rates, so 7.2 kHz for 16 kHz output) evaluated at fractional input positions, i.e.
 * low-pass filtering and interpolation in one step. Output sample n sits at input position
 * n * inRate / outRate. Output lags the input by `halfWidth` input samples (< 1 ms).
 */
export class Resampler {
  constructor(inRate, outRate, { zeroCrossings = 16, tableResolution = 512 } = {}) {
    if (!(inRate > 0) || !(outRate > 0)) throw new RangeError('sample rates must be positive');
    this.inRate = inRate;
    this.outRate = outRate;
    this.passthrough = inRate === outRate;
    this.step = inRate / outRate;
    const cutoff = 0.45 * Math.min(inRate, outRate); // Hz
    this.fc = cutoff / inRate; // cycles per input sample
    // Kernel half width in input samples: `zeroCrossings` lobes of the sinc.
    this.halfWidth = zeroCrossings / (2 * this.fc);
    this.hw = Math.ceil(this.halfWidth);
    // Kernel table over [0, halfWidth] in steps of 1 / tableResolution input samples.
    this.res = tableResolution;
    const n = Math.ceil(this.halfWidth * tableResolution) + 2;
    this.table = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const x = i / tableResolution;
      this.table[i] = x >= this.halfWidth
        ? 0
        : 2 * this.fc * sinc(2 * this.fc * x) * blackman(x / this.halfWidth);
    }
    // Input history: buf[0] is absolute input index `bufStart`. Pre-filled with zeros so the
    // first output is centred on input sample 0.
    this.buf = new Float32Array(4096 + 2 * this.hw);
    this.bufStart = -this.hw;
    this.bufLen = this.hw;
    this.outCount = 0; // number of output samples produced so far
    this.inCount = 0; // number of input samples given so far
  }

  kernel(x) {
    const ax = Math.abs(x) * this.res;
    const i = Math.floor(ax);
    if (i + 1 >= this.table.length) return 0;
    const f = ax - i;
    return this.table[i] + (this.table[i + 1] - this.table[i]) * f;
  }

  /** Feed input samples; returns the output samples (Float32Array) now computable. */
  process(input) {
    if (this.passthrough) return Float32Array.from(input);
    this.append(input);
    const out = [];
    const end = this.bufStart + this.bufLen; // exclusive absolute index
    for (;;) {
      const pos = (this.outCount * this.inRate) / this.outRate;
      const centre = Math.floor(pos);
      if (centre + this.hw >= end) break;
      let acc = 0;
      let wsum = 0;
      const lo = centre - this.hw + 1;
      const hi = centre + this.hw;
      for (let k = lo; k <= hi; k++) {
        const w = this.kernel(pos - k);
        acc += this.buf[k - this.bufStart] * w;
        wsum += w;
      }
      // The kernel sums to ~1 over integer taps; dividing by the actual sum makes the DC gain
      // exactly 1 at every fractional phase.
      out.push(wsum > 0 ? acc / wsum : 0);
      this.outCount++;
    }
    // Drop history no future output needs.
    const nextCentre = Math.floor((this.outCount * this.inRate) / this.outRate);
    const keepFrom = nextCentre - this.hw + 1;
    const drop = keepFrom - this.bufStart;
    if (drop > 0) {
      this.buf.copyWithin(0, drop, this.bufLen);
      this.bufLen -= drop;
      this.bufStart += drop;
    }
    return Float32Array.from(out);
  }

  /**
   * End of stream: returns the remaining outputs up to the last real input sample (the filter
   * tail is fed zeros). Call `reset()` before feeding a new stream.
   */
  flush() {
    if (this.passthrough) return new Float32Array(0);
    const wanted = Math.ceil((this.inCount * this.outRate) / this.inRate);
    const before = this.outCount;
    const got = this.process(new Float32Array(2 * this.hw + 2));
    return got.slice(0, Math.max(0, Math.min(got.length, wanted - before)));
  }

  reset() {
    this.bufStart = -this.hw;
    this.bufLen = this.hw;
    this.buf.fill(0);
    this.outCount = 0;
    this.inCount = 0;
  }

  append(input) {
    const need = this.bufLen + input.length;
    if (need > this.buf.length) {
      const bigger = new Float32Array(Math.max(need, this.buf.length * 2));
      bigger.set(this.buf.subarray(0, this.bufLen));
      this.buf = bigger;
    }
    this.buf.set(input, this.bufLen);
    this.bufLen += input.length;
    this.inCount += input.length;
  }
}

/** Collects samples and emits fixed-size Float32Array chunks (e.g. 1600 samples = 100 ms). */
export class Chunker {
  constructor(size) {
    this.size = size;
    this.buf = new Float32Array(size);
    this.len = 0;
  }

  /** Push samples; returns an array of complete chunks (each a fresh Float32Array). */
  push(samples) {
    const chunks = [];
    let i = 0;
    while (i < samples.length) {
      const n = Math.min(this.size - this.len, samples.length - i);
      this.buf.set(samples.subarray(i, i + n), this.len);
      this.len += n;
      i += n;
      if (this.len === this.size) {
        chunks.push(this.buf);
        this.buf = new Float32Array(this.size);
        this.len = 0;
      }
    }
    return chunks;
  }

  /** The incomplete remainder (possibly empty), resetting the chunker. */
  flush() {
    const rest = this.buf.slice(0, this.len);
    this.len = 0;
    return rest;
  }
}
