// AudioWorkletProcessor: downmixes the microphone to mono, resamples to 16 kHz when the
// context runs at another rate (windowed-sinc low-pass + interpolation, see pcm.js), converts
// to s16le and posts 100 ms chunks to the main thread:
//   {type: 'chunk', pcm: ArrayBuffer (3200 bytes), rms, peak}
// On {type: 'flush'} it posts the remaining partial chunk (if any) and then {type: 'flushed'}.
import { Chunker, Resampler, floatToS16le, levelOf } from './pcm.js';

const OUT_RATE = 16000;

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    // `sampleRate` is the AudioWorkletGlobalScope's context rate.
    this.inRate = sampleRate;
    this.resampler = this.inRate === OUT_RATE ? null : new Resampler(this.inRate, OUT_RATE);
    this.chunker = new Chunker(opts.chunkSamples || 1600);
    this.mono = new Float32Array(128);
    this.stopped = false;
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === 'flush') this.flush();
    };
    this.port.postMessage({ type: 'started', inRate: this.inRate, resampling: !!this.resampler });
  }

  emit(samples) {
    if (!samples.length) return;
    const { rms, peak } = levelOf(samples);
    const pcm = floatToS16le(samples);
    this.port.postMessage({ type: 'chunk', pcm, rms, peak }, [pcm]);
  }

  flush() {
    if (this.resampler) {
      for (const c of this.chunker.push(this.resampler.flush())) this.emit(c);
    }
    this.emit(this.chunker.flush());
    this.stopped = true;
    this.port.postMessage({ type: 'flushed' });
  }

  process(inputs) {
    if (this.stopped) return false;
    const input = inputs[0];
    if (!input || input.length === 0 || !input[0]) return true; // no input connected yet
    const frames = input[0].length;
    if (this.mono.length !== frames) this.mono = new Float32Array(frames);
    const mono = this.mono;
    if (input.length === 1) {
      mono.set(input[0]);
    } else {
      mono.fill(0);
      for (const ch of input) for (let i = 0; i < frames; i++) mono[i] += ch[i];
      const k = 1 / input.length;
      for (let i = 0; i < frames; i++) mono[i] *= k;
    }
    const out = this.resampler ? this.resampler.process(mono) : mono;
    for (const c of this.chunker.push(out)) this.emit(c);
    return true;
  }
}

registerProcessor('voxbridge-capture', CaptureProcessor);
